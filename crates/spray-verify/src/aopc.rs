//! Region perturbation (thesis Ch. 3): grid cells removed cumulatively (filled with the image's
//! mean colour), most relevant first (MoRF) or in a seeded random order;
//! AOPC = 1/(L+1) Σ_{k=0..L} (f(x) − f(x_k)), averaged over the class's images. A faithful
//! heatmap makes the MoRF curve fall faster: AOPC(MoRF) > AOPC(random).

use spray_store::verify::Aopc;

use crate::images::ImageSource;
use crate::members::{spread, Member};
use crate::perturb::occlude;
use crate::region;
use crate::scorer::Scorer;
use crate::settings::Fill;
use crate::Result;

/// How the curves are taken: on which grid, over how many steps and images, at which input
/// size, with which seed for the random order.
pub struct AopcSetup {
    pub grid: usize,
    pub steps: usize,
    pub images: usize,
    /// Input height and width.
    pub size: [usize; 2],
    pub seed: u64,
}

/// The cells of a g × g map, most relevant first (ties by cell index).
fn morf_order(map: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    order
}

/// A seeded permutation of the cells (Fisher–Yates on a linear congruential generator: the
/// same order for the same image and seed on every platform).
fn random_order(cells: usize, seed: u64, image_index: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cells).collect();
    let mut state = seed ^ (image_index as u64).wrapping_mul(0x9E37_79B9);
    for j in (1..order.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(j, ((state >> 33) as usize) % (j + 1));
    }
    order
}

/// The AOPC row of one class: (index, name, composite) name it, `members` are its images.
pub fn aopc_row(
    scorer: &mut dyn Scorer,
    images: &dyn ImageSource,
    (class, class_name, composite): (i32, String, String),
    members: &[Member],
    setup: &AopcSetup,
) -> Result<Aopc> {
    let g = setup.grid;
    let [h, w] = setup.size;
    let steps = setup.steps.min(g * g);
    let k = class as usize;
    let chosen = spread(&(0..members.len()).collect::<Vec<_>>(), setup.images);
    let mut sums = [0.0f64; 2];
    let cells = region::pixel_cells(g, h, w);
    for &i in &chosen {
        let m = &members[i];
        let original = images.tensor(m.image_index)?;
        let orders = [
            morf_order(&m.map),
            random_order(g * g, setup.seed, m.image_index),
        ];
        // x_1 … x_L of each order (k cells removed), in one batch. f(x_0) is the relevance
        // stage's: the same model on the same input (the class logit it explained), not
        // scored again.
        let mut tensors = Vec::with_capacity(2 * steps);
        for order in &orders {
            tensors.extend((1..=steps).map(|s| {
                let mut t = original.to_vec();
                let mask = region::mask_of_cells(&order[..s], g, &cells);
                occlude(&mut t, &mask, w, Fill::Mean, 0);
                t
            }));
        }
        let logits = scorer.logits(&tensors)?;
        let f0 = m.class_logit as f64;
        for (o, sum) in sums.iter_mut().enumerate() {
            // f(x_0) − f(x_0) = 0 is the curve's first term.
            let curve = &logits[o * steps..(o + 1) * steps];
            *sum += curve.iter().map(|l| f0 - l[k] as f64).sum::<f64>() / (steps + 1) as f64;
        }
    }
    let n = chosen.len().max(1) as f64;
    Ok(Aopc {
        class_index: class,
        class_name,
        composite,
        images: chosen.len(),
        steps,
        aopc_morf: sums[0] / n,
        aopc_random: sums[1] / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_most_relevant_first_and_seeded() {
        assert_eq!(morf_order(&[0.1, 0.7, 0.7, -1.0]), vec![1, 2, 0, 3]);
        let a = random_order(16, 3, 5);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
        assert_eq!(a, random_order(16, 3, 5));
        assert_ne!(a, random_order(16, 4, 5));
    }

    /// One image, a 2 × 2 grid of one pixel each; the model reads pixel 0 of channel 0
    /// (4, the others 0: the channel's mean is 1, so filling pixel 0 lowers the logit by 3).
    #[test]
    fn the_curves_average_the_drops_including_the_unperturbed_step() {
        struct One(Vec<f32>);
        impl ImageSource for One {
            fn tensor(&self, _: usize) -> Result<crate::images::Tensor> {
                Ok(self.0.as_slice().into())
            }
        }
        let mut image = vec![0.0; 12];
        image[0] = 4.0;
        let mut weights = vec![0.0; 12];
        weights[0] = 1.0;
        let mut model = crate::scorer::fake::LinearModel {
            weights: vec![weights],
            scored: 0,
        };
        let member = Member {
            image_index: 7,
            map: vec![1.0, 0.5, 0.2, 0.1],
            predicted: 0,
            class_logit: 4.0,
            ..crate::members::bare_member(7)
        };
        let setup = AopcSetup {
            grid: 2,
            steps: 2,
            images: 10,
            size: [2, 2],
            seed: 3,
        };
        let row = aopc_row(
            &mut model,
            &One(image),
            (0, "zero".into(), "epsilon".into()),
            &[member],
            &setup,
        )
        .unwrap();
        // Two steps of each order; x_0's logit is the member's (the relevance stage's).
        assert_eq!(model.scored, 2 + 2);
        // MoRF: pixel 0 goes first: drops 0, 3, 3.
        assert_eq!(row.aopc_morf, 2.0);
        // Random: the drop is 3 from the step that removes cell 0 on.
        let order = random_order(4, 3, 7);
        let steps_after_it = (1..=2).filter(|&s| order[..s].contains(&0)).count();
        assert_eq!(row.aopc_random, 3.0 * steps_after_it as f64 / 3.0);
        assert_eq!((row.images, row.steps), (1, 2));
    }
}
