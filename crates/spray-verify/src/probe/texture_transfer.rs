//! [`EvidenceTest::TextureTransfer`]: no region, no shape — each group image's fine detail
//! (the image minus its low-pass, as the fine-detail transfer takes it) is given to another
//! class's image as a texture: its fine frequencies with their phases turned by random
//! angles, the same for the three channels (`spectrum::add_scrambled`). What is given is
//! what kind of texture the image holds — how strong, how fine, which way, in what colour,
//! noise of its own in each channel or one grey pattern — and nothing of where anything lies
//! or what shape it has.
//!
//! Why: the fine-detail transfer gives the group's detail with the object's edges in it, and
//! its control, the class's other images' detail, turns recipients with those edges too. On
//! a held-out ResNet whose "cross" relied on sensor noise (stamped on other classes' images,
//! 78% turned), the noisy group's detail turned 57% of recipients and the control 37%:
//! +0.20, unflagged. As a texture the class's own detail turns few (its edges no longer form
//! a cross: 26%), the noise as many as before (63%): +0.37. The three channels turn
//! together: given the noise field's own phases in every channel (as the pattern transfer's
//! texture is), a texture is grey, and the model, which read the sensor noise's colour,
//! turned 40% (benches/RESULTS.md).
//!
//! The control: the class's other images' detail as a texture under the same phases, each
//! scaled to the fine energy of the group image the same recipient takes from. Recipient j
//! is given from group image j and from the rest's image j under one phase field, at one
//! strength, so the two differ only in the texture's spectrum and colour. Why at the group's
//! strength: a class the model reads from any texture of that strength (fur, foliage) is not
//! a shortcut of the group's.
//!
//! Only a group whose texture stands apart from the rest of its class's beyond chance is
//! tested (`ClassDetail::texture_stands_apart`): in what does not change with the detail's
//! strength — the channels' balance, the orientation, the colour's share, the fineness —
//! since the control matches the strength, and nothing of place, which a texture does not
//! carry.
//!
//! Occlusion is the fine-detail transfer's: the group's images keep only their low-pass.

use spray_dataset::SplitMix64;
use spray_store::space::SpaceRole;
use spray_store::EvidenceTest;

use super::class_detail::{fine_detail, texture_energy, ClassDetail};
use super::{Carrier, Giving, Method, Occluding, PerDonor, Plan, Probe, ProbeInput, Wording};
use crate::perturb::low_pass;
use crate::spectrum::add_scrambled;
use crate::Result;

pub(super) static PROBE: Probe = Probe {
    test: EvidenceTest::TextureTransfer,
    // Every group of explanations (relevance and concept spaces), as the fine-detail transfer.
    also_for: |space| space.role == SpaceRole::Explanation,
    on: |settings| settings.texture_transfer,
    beyond_budget: false,
    method: Method::Pixels(plan),
    wording: Wording {
        transferred: "texture turns",
        captions: [
            "cluster member",
            "fine detail removed",
            "other class",
            "texture added",
        ],
        sentence: SENTENCE,
    },
};

fn plan(input: &ProbeInput<'_>) -> Result<Option<Plan>> {
    let class = ClassDetail::of_class(input)?;
    if !class.texture_stands_apart(input.group, input.settings.seed) {
        return Ok(None);
    }
    let scaled_to: Vec<f64> = input
        .group
        .iter()
        .map(|&i| class.fine.get(i).copied().unwrap_or(0.0))
        .collect();
    Ok(Some(Plan {
        region: "texture".to_string(),
        region_cells: input.grid * input.grid,
        group: Box::new(Texture::default()),
        control: Box::new(Texture {
            scaled_to,
            ..Texture::default()
        }),
        second_control: None,
    }))
}

/// Mixed into the run's seed for the phase fields (one per recipient).
const PHASE_SALT: u64 = 0x7E87_F1E1_D000_0001;

/// The seed of the phase field recipient `j` (counted over the whole transplant) is given
/// under, by the group and by the control alike.
fn phase_seed(seed: u64, j: usize) -> u64 {
    SplitMix64(seed ^ PHASE_SALT ^ (j as u64).rotate_left(17)).next_u64()
}

/// Each donor's fine detail as a texture under random phases: occlusion leaves an image its
/// low-pass, a transplant adds the texture to the recipient.
#[derive(Debug, Default)]
struct Texture {
    /// The control's strengths: recipient j's texture is scaled to the fine energy of
    /// `scaled_to[j mod len]` (the group image it takes from in the group's transplant).
    /// Empty: each donor's own strength.
    scaled_to: Vec<f64>,
    /// Each donor's fine detail and its fine energy.
    details: PerDonor<(Vec<f32>, f64)>,
}

impl Texture {
    /// How much recipient `j`'s texture is scaled, given its donor's fine `energy`: by the
    /// root of the ratio to its strength in `scaled_to`; a donor without fine detail gives
    /// nothing where it must be scaled.
    fn scale(&self, j: usize, energy: f64) -> f64 {
        if self.scaled_to.is_empty() {
            return 1.0;
        }
        let target = self.scaled_to[j % self.scaled_to.len()];
        if energy > 0.0 {
            (target / energy).sqrt()
        } else {
            0.0
        }
    }
}

impl Carrier for Texture {
    fn take_away(&self, _: usize, image: &mut Vec<f32>, at: &Occluding<'_>) {
        *image = low_pass(image, at.apply.width);
    }

    fn give(&self, j: usize, recipient: &mut Vec<f32>, from: &Giving<'_>) {
        let n = from.donors.len();
        if n == 0 {
            return;
        }
        let d = j % n;
        let apply = from.apply;
        let detail = self.details.get(d, || {
            let donor = &from.donors[d];
            let detail = fine_detail((donor, &low_pass(donor, apply.width)));
            let energy = texture_energy(&detail, apply.width);
            (detail, energy)
        });
        let scale = self.scale(j, detail.1) as f32;
        let seed = phase_seed(apply.seed, j);
        add_scrambled(
            recipient,
            &detail.0,
            (apply.width, seed, scale, apply.bounds),
        );
    }

    /// Occlusion only: no donors, no strengths.
    fn subset(&self, _: &[usize]) -> Box<dyn Carrier> {
        Box::new(Texture::default())
    }
}

const SENTENCE: &str =
    "Adding the fine detail of {group}'s images as a texture (each image minus its low-pass, \
         under random phases: how strong, how fine, which way and in what colour the detail \
         is — noise, grain, a screen — and nothing of where anything lies or what shape it \
         has) to {images} images of other classes turns {flip} of them into “{class}” (logit \
         {gain} on average; the class's other images' detail as a texture of the same \
         strength: {control}); removing the fine detail from the group's own images lowers \
         the logit by {drop} (by {drop_rest} in the rest of the class).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::fake::{class_zero_of, row_of};
    use crate::images::Tensor;
    use crate::probe::pattern_transfer::fake::{world, S};
    use crate::probe::Apply;
    use crate::settings::Fill;
    use crate::VerifySettings;

    /// The texture transfer in the pattern transfer's world: class 0's first three images
    /// hold a checkerboard at their own offsets (the shortcut, which the model reads at any
    /// sign), its other three vertical stripes and the object. Given as a texture, the
    /// checkerboard turns every class-1 image (3.0 against 2.3); the stripes at the same
    /// strength turn none; the checkerboard's images low-passed lose their class. The
    /// stripes' group, tested too, turns none.
    #[test]
    fn a_texture_the_model_reads_turns_recipients_and_the_rest_at_its_strength_does_not() {
        let (tensors, mut model) = world();
        let settings = VerifySettings {
            texture_transfer: true,
            ..VerifySettings::own_tests_only()
        };
        let rows = class_zero_of(&mut model, tensors, (6, 3), &settings, S);
        let shortcut = row_of(&rows, EvidenceTest::TextureTransfer, "cluster 0");
        assert_eq!(shortcut.region, "texture");
        assert_eq!(shortcut.transplant_flip_rate, 1.0);
        assert_eq!(shortcut.transplant_flip_rate_rest, 0.0);
        assert_eq!(shortcut.accuracy_after, 0.0);
        let stripes = row_of(&rows, EvidenceTest::TextureTransfer, "cluster 1");
        assert_eq!(stripes.transplant_flip_rate, 0.0);
    }

    /// The control's texture holds the fine energy of the group image its recipient takes
    /// from, whatever its donor's; the group's holds its donor's own; both under the phases
    /// of the recipient.
    #[test]
    fn the_control_is_given_at_the_group_images_strength_under_the_same_phases() {
        let (tensors, _) = world();
        let bounds = [(-100.0, 100.0); 3];
        let apply = Apply {
            width: S,
            fill: Fill::Mean,
            seed: 3,
            bounds: &bounds,
        };
        let energy = |t: &[f32]| -> f64 { texture_energy(t, S) };
        let blank = Tensor::from(vec![0.0f32; 3 * S * S]);
        let donors: [Tensor; 2] = [tensors[3].as_slice().into(), tensors[4].as_slice().into()];
        let own = energy(&fine_detail((&donors[0], &low_pass(&donors[0], S))));
        let group = Texture::default();
        let control = Texture {
            scaled_to: vec![4.0 * own, own],
            ..Texture::default()
        };
        let given = |carrier: &Texture| {
            apply.give((&[blank.clone(), blank.clone()], 0), &donors, carrier, &[])
        };
        let (from_group, from_control) = (given(&group), given(&control));
        for (j, want) in [(0, 4.0 * own), (1, own)] {
            let got = energy(&from_control[j]);
            assert!(
                (got - want).abs() < 1e-3 * want,
                "{j}: {got} against {want}"
            );
            assert!((energy(&from_group[j]) - own).abs() < 1e-3 * own);
        }
        // Recipient 0: the same donor and phases, twice the amplitude.
        for (c, g) in from_control[0].iter().zip(&from_group[0]) {
            assert!((c - 2.0 * g).abs() < 1e-4, "{c} against {g}");
        }
        // Another recipient, other phases.
        assert_ne!(phase_seed(3, 0), phase_seed(3, 1));
        assert_eq!(control.scale(5, 0.0), 0.0);
        assert_eq!(group.scale(5, 0.0), 1.0);
    }
}
