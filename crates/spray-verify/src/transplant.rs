//! The transplant side of a pixel-side test: what the group's images (and, as the controls,
//! the class's other images) give to other classes' images, look by look, and the rates it
//! measured — the flip rate, the stronger control's, the stopping rules that decide how many
//! recipients a row needs, and the class's bar.

use spray_store::ranking::ClassEvidence;
use spray_store::verify::Evidence;

use crate::images::{ImageSource, Tensor};
use crate::members::{later_looks, looks};
use crate::perturb::ColourProfile;
use crate::probe::{Apply, Carrier, Plan};
use crate::recipients::Recipients;
use crate::scorer::{predicted, Scorer};
use crate::Result;

/// Share of the `eligible` recipients (not the class before) that the class's logit wins
/// after.
fn flip_rate(after: &[Option<Vec<f32>>], eligible: &[usize], k: usize) -> f64 {
    eligible.iter().filter(|&&j| turned(after, j, k)).count() as f64 / eligible.len().max(1) as f64
}

/// Whether recipient `j` was measured and the class's logit wins it after.
fn turned(after: &[Option<Vec<f32>>], j: usize, k: usize) -> bool {
    after[j].as_ref().is_some_and(|a| predicted(a) == k)
}

/// Images with their colour profiles (`perturb::ColourProfile`).
pub(crate) type WithColours<'a> = (&'a [Tensor], &'a [ColourProfile]);

/// Where a transplant takes from: the group's images and the class's other images, the
/// control.
pub(crate) struct Sides<'a> {
    pub(crate) donors: WithColours<'a>,
    pub(crate) rest: WithColours<'a>,
}

/// The carriers of the controls: none when the class has no other images.
fn control_carriers<'p>(plan: &'p Plan, sides: &Sides<'_>) -> Vec<&'p dyn Carrier> {
    if sides.rest.0.is_empty() {
        return Vec::new();
    }
    std::iter::once(&*plan.control)
        .chain(plan.second_control.as_deref())
        .collect()
}

/// The recipients at `positions`, each given from `images` by `carrier`.
fn give(
    apply: &Apply<'_>,
    (images, colours): WithColours<'_>,
    carrier: &dyn Carrier,
    recipients: &Recipients,
    positions: &[usize],
) -> Vec<Vec<f32>> {
    positions
        .iter()
        .flat_map(|&p| {
            let one = std::slice::from_ref(recipients.tensor(p));
            apply.give((one, p), images, carrier, colours)
        })
        .collect()
}

/// The recipients' logits after the group's transplant (or injection) and after each
/// control's, by recipient position (`None` where not measured yet).
pub(crate) struct Transplanted {
    after: Vec<Option<Vec<f32>>>,
    /// One list per control.
    controls: Vec<Vec<Option<Vec<f32>>>>,
    /// Recipient 0 transplanted, for the report's pictures.
    pub(crate) first_pasted: Option<Vec<f32>>,
    /// By position: whether its controls were measured (every control at once).
    controlled: Vec<bool>,
}

/// What a transplant did to the recipients measured so far.
pub(crate) struct Rates {
    pub(crate) flip: f64,
    /// The stronger control's flip rate.
    pub(crate) control: f64,
    /// Mean gain of the class logit.
    pub(crate) gain: f64,
    pub(crate) measured: usize,
    /// Of those, the recipients the controls were measured on (0: none, a screened row).
    pub(crate) control_measured: usize,
    /// Recipients the class did not already win before: the rates' denominator.
    pub(crate) eligible: usize,
    /// The variance of one recipient's (turned by the group − turned by the stronger control),
    /// and the recipients it rests on, where the controls were measured on every eligible
    /// recipient.
    pub(crate) paired: Option<(f64, f64)>,
}

impl Transplanted {
    pub(crate) fn new(recipients: usize, controls: usize) -> Self {
        Transplanted {
            after: vec![None; recipients],
            controls: vec![vec![None; recipients]; controls],
            first_pasted: None,
            controlled: vec![false; recipients],
        }
    }

    /// Transplant the group's plan onto the recipients at `positions`. Recipient p receives
    /// from donor p mod |donors| however the positions are split.
    fn give_group(
        &mut self,
        scorer: &mut dyn Scorer,
        (apply, plan): (&Apply<'_>, &Plan),
        sides: &Sides<'_>,
        recipients: &Recipients,
        positions: &[usize],
    ) -> Result<()> {
        recipients.score(scorer, positions)?;
        let pasted = give(apply, sides.donors, &*plan.group, recipients, positions);
        if let Some(i) = positions.iter().position(|&p| p == 0) {
            self.first_pasted = Some(pasted[i].clone());
        }
        self.record(None, positions, scorer.logits(&pasted)?);
        Ok(())
    }

    /// The controls onto the same recipients: the same region (or colours) from the class's
    /// other images. A region that shows the class's object flips recipients whichever
    /// member it comes from; a shortcut the group shares flips them only when it comes from
    /// the group. The next control only while `enough` says the ones measured so far have
    /// not settled the look (`Rates::could_flag` against them alone): a further control can
    /// only lower the effect, which counts against the stronger.
    fn give_controls(
        &mut self,
        scorer: &mut dyn Scorer,
        (apply, plan): (&Apply<'_>, &Plan),
        sides: &Sides<'_>,
        (recipients, positions): (&Recipients, &[usize]),
        enough: &dyn Fn(&Transplanted) -> bool,
    ) -> Result<()> {
        for c in 0..control_carriers(plan, sides).len() {
            if c > 0 && enough(self) {
                break;
            }
            self.give_control(
                scorer,
                (apply, plan),
                sides,
                (recipients, positions),
                Some(c),
            )?;
        }
        // Measured, also where the class has no other images to give a control from.
        positions.iter().for_each(|&p| self.controlled[p] = true);
        Ok(())
    }

    /// Control `c` alone onto the recipients at `positions`, which count as controlled (none:
    /// no control, a class with no other images).
    fn give_control(
        &mut self,
        scorer: &mut dyn Scorer,
        (apply, plan): (&Apply<'_>, &Plan),
        sides: &Sides<'_>,
        (recipients, positions): (&Recipients, &[usize]),
        c: Option<usize>,
    ) -> Result<()> {
        let carriers = control_carriers(plan, sides);
        if let Some((c, &carrier)) = c.and_then(|c| Some((c, carriers.get(c)?))) {
            let given = give(apply, sides.rest, carrier, recipients, positions);
            self.record(Some(c), positions, scorer.logits(&given)?);
        }
        positions.iter().for_each(|&p| self.controlled[p] = true);
        Ok(())
    }

    /// The control that turned the most of the eligible recipients it was measured on (the
    /// first of equals): the one the row's effect is taken against (`rates`).
    fn stronger_control(&self, recipients: &Recipients, k: usize) -> Option<usize> {
        let controlled: Vec<usize> = (0..self.after.len())
            .filter(|&p| self.after[p].is_some() && self.controlled[p])
            .filter(|&p| recipients.before(p, k).1 != k)
            .collect();
        let rates = self.control_rates(&controlled, k);
        let strongest = rates.iter().map(|r| r.0).fold(0.0f64, f64::max);
        rates.iter().position(|&(rate, _)| rate == strongest)
    }

    /// Each control's flip rate over the recipients of `controlled` it was measured on, and
    /// how many those are: a row can stop after its first control (`give_controls`), and its
    /// later controls then have none.
    fn control_rates(&self, controlled: &[usize], k: usize) -> Vec<(f64, usize)> {
        self.controls
            .iter()
            .map(|after| {
                let on: Vec<usize> = controlled
                    .iter()
                    .copied()
                    .filter(|&p| after[p].is_some())
                    .collect();
                (flip_rate(after, &on, k), on.len())
            })
            .collect()
    }

    /// The logits of the recipients at `positions`: after the group's change (`None`) or
    /// after control `c`'s.
    pub(crate) fn record(
        &mut self,
        control: Option<usize>,
        positions: &[usize],
        logits: Vec<Vec<f32>>,
    ) {
        let slots = match control {
            None => &mut self.after,
            Some(c) => {
                positions.iter().for_each(|&p| self.controlled[p] = true);
                &mut self.controls[c]
            }
        };
        for (&p, a) in positions.iter().zip(logits) {
            slots[p] = Some(a);
        }
    }

    /// The rates over the recipients measured, in position order (so a group measured in two
    /// steps sums its gain in the same order as one measured at once); a recipient the class
    /// already won before is not counted in the flip rates.
    pub(crate) fn rates(&self, recipients: &Recipients, k: usize) -> Rates {
        let measured: Vec<(usize, &Vec<f32>)> = self
            .after
            .iter()
            .enumerate()
            .filter_map(|(p, a)| Some((p, a.as_ref()?)))
            .collect();
        let gain = measured
            .iter()
            .map(|&(p, a)| (a[k] - recipients.before(p, k).0) as f64)
            .sum::<f64>()
            / measured.len().max(1) as f64;
        let eligible: Vec<usize> = measured
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| recipients.before(p, k).1 != k)
            .collect();
        // The controls' rate over the eligible recipients they were measured on (all of them
        // unless the row stopped at a look's screen).
        let controlled: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&p| self.controlled[p])
            .collect();
        let control_rates = self.control_rates(&controlled, k);
        let control = control_rates.iter().map(|r| r.0).fold(0.0f64, f64::max);
        // The stronger control (the first of equals), paired recipient by recipient with the
        // group's transplant.
        let paired = control_rates
            .iter()
            .position(|&(rate, _)| rate == control)
            .filter(|&c| control_rates[c].1 == eligible.len() && !eligible.is_empty())
            .map(|c| &self.controls[c])
            .map(|after| {
                let n = controlled.len() as f64;
                let (mut b, mut c) = (0usize, 0usize);
                for &p in &controlled {
                    match (turned(&self.after, p, k), turned(after, p, k)) {
                        (true, false) => b += 1,
                        (false, true) => c += 1,
                        _ => {}
                    }
                }
                // Half a recipient added to each cell of the 2 × 2 table (Agresti & Min 2005):
                // on ten recipients one discordant pair would otherwise read as certainty.
                let n = n + 2.0;
                let (b, c) = ((b as f64 + 0.5) / n, (c as f64 + 0.5) / n);
                ((b + c) - (b - c) * (b - c), n)
            });
        Rates {
            flip: flip_rate(&self.after, &eligible, k),
            control,
            gain,
            measured: measured.len(),
            control_measured: measured
                .iter()
                .filter(|&&(p, _)| self.controlled[p])
                .count(),
            eligible: eligible.len(),
            paired,
        }
    }
}

impl Rates {
    /// The effect specific to the group: flip rate − the stronger control's (computed as
    /// `Evidence::specific` computes it from the row's columns, so the two compare exactly).
    pub(crate) fn specific(&self) -> f64 {
        self.flip - self.control
    }

    /// Whether the row stopped before any control (`Evidence::screened`).
    pub(crate) fn screened(&self) -> bool {
        self.control_measured == 0
    }

    /// Whether what was measured so far leaves room for the row to matter: the specific
    /// effect (flip rate − control) plus two standard errors (`effect_error`) reaches `bar` —
    /// the flag (`FLAG_SPECIFIC_EFFECT`), or, once a row of the class has reached it, that
    /// row's effect (a row below it changes neither the class's verdict nor its strongest
    /// row). Why stop otherwise: most groups of most classes turn few recipients beyond their
    /// control, and measuring them on every recipient is most of the stage's cost; a group
    /// whose true effect reaches the bar shows an effect this far below it on the first
    /// recipients in about 2% of draws (one-sided, two standard errors), a real shortcut's
    /// larger effect far more rarely.
    pub(crate) fn could_flag(&self, bar: f64) -> bool {
        self.eligible == 0 || self.specific() + 2.0 * self.effect_error() >= bar
    }

    /// The standard error of the specific effect: paired where the controls were measured on
    /// the same recipients. Why: the effect is a difference on the same recipients, and only
    /// those the group and the control disagree on carry information about it — a recipient
    /// that any class image's detail (or region, or colours) turns, turns under both. Two
    /// independent rates' error near 0.5 each (≈ 0.22 on ten recipients) kept rows whose
    /// group and control turn the same recipients going to 30 and 90 recipients; on the
    /// scenario suite the pairing scored 4–18% fewer images, every verdict the same
    /// (benches/RESULTS.md).
    fn effect_error(&self) -> f64 {
        match self.paired {
            Some((v, n)) => (v / n).sqrt(),
            None => self.standard_error(self.control),
        }
    }

    /// Whether the group's own transplant could reach `bar` even against a control that
    /// turns no recipient: its flip rate plus two standard errors reaches it. Where not, its
    /// controls need not be measured — they could only lower its effect — and it stops (a
    /// screened row, `Evidence::screened`).
    pub(crate) fn could_flag_alone(&self, bar: f64) -> bool {
        self.could_reach(0.0, bar)
    }

    /// Whether the effect reaches the flag even less two standard errors: what more
    /// recipients would show could change its figure, not its verdict (a row whose true effect
    /// is below the flag passes this in under ~2% of draws, one-sided). The stage asks only
    /// from the second look on: on ten recipients that all turn, the standard error reads 0.
    pub(crate) fn surely_flags(&self) -> bool {
        self.eligible > 0
            && self.specific() - 2.0 * self.effect_error()
                >= spray_store::ranking::FLAG_SPECIFIC_EFFECT
    }

    /// Whether the row leaves the flag open: its effect is within two standard errors of the
    /// flag, above or below it (`could_flag` it but not `surely_flags`). Such a row is
    /// measured on more recipients where there are more (`verdict_images`).
    pub(crate) fn undecided(&self) -> bool {
        self.eligible > 0
            && self.could_flag(spray_store::ranking::FLAG_SPECIFIC_EFFECT)
            && !self.surely_flags()
    }

    /// The standard error of flip rate − `control` over the eligible recipients.
    fn standard_error(&self, control: f64) -> f64 {
        ((self.flip * (1.0 - self.flip) + control * (1.0 - control)) / self.eligible as f64).sqrt()
    }

    /// Whether flip rate − `control` plus two standard errors reaches `bar`.
    fn could_reach(&self, control: f64, bar: f64) -> bool {
        if self.eligible == 0 {
            return true;
        }
        self.flip - control + 2.0 * self.standard_error(control) >= bar
    }
}

/// Where a class stands when its next row is measured: its strongest counting row so far,
/// and whether its verdict is settled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Standing {
    /// The largest specific effect among the class's rows that count (`Evidence::counts`);
    /// none before any counts.
    pub(crate) strongest: Option<f64>,
    /// Whether one of those rows surely flags (`Rates::surely_flags`): whatever its later
    /// rows measure, the class is flagged.
    pub(crate) settled: bool,
}

impl Standing {
    /// The class's standing after `rows`; `settled`: whether one of them surely flagged.
    pub(crate) fn of(rows: &[Evidence], settled: bool) -> Self {
        Standing {
            // The ranking's own choice of a class's strongest row.
            strongest: ClassEvidence::strongest(rows).map(|e| e.specific()),
            settled,
        }
    }

    /// What the class's next row must be able to reach to matter: the flag, or the strongest
    /// counting row's effect once one has reached the flag (`Rates::could_flag`).
    pub(crate) fn bar(&self) -> f64 {
        let flag = spray_store::ranking::FLAG_SPECIFIC_EFFECT;
        self.strongest.map_or(flag, |s| s.max(flag))
    }

    /// Whether the class is flagged whatever its later rows measure: a row surely flagged it
    /// (`settled`), or one reached the flag and no later step can take a verdict again —
    /// `reopenable`: there are later recipients for the rows its first ones left open
    /// (`verdict_images`, off by default; `verdict::decide_open`). Why the second: the flag
    /// is the strongest counting row's effect, and a later row only adds a row; where no row
    /// is measured again, a class at the flag stays there.
    fn flagged_for_good(&self, reopenable: bool) -> bool {
        let flag = spray_store::ranking::FLAG_SPECIFIC_EFFECT;
        self.settled || (!reopenable && self.strongest.is_some_and(|s| s >= flag))
    }

    /// Whether a row measured so far at `rates` has shown enough to stop: in a class flagged
    /// for good (`flagged_for_good`), a row whose effect so far does not exceed the class's
    /// strongest — and a row that counts only once its group's loss is measured
    /// (`needs_loss`, the fine-detail transfer) one whose effect is not more than one
    /// standard error (`Rates::effect_error`) above it. Why: such a class is flagged whatever
    /// its later rows show, and they could only raise its figure (which orders the flagged
    /// classes among themselves); following every row near the strongest to a verdict on it
    /// took most of a flagged class's images (photos' "star": three rows at 0.28–0.46 beside
    /// its 0.42, 90–100 recipients each). Why the margin only where the loss decides: a row
    /// stopped short is not occluded and so does not count, and one followed for being above
    /// the strongest by less than its own error mostly ended below (held-resnet-n's "ring":
    /// two fine-detail rows above 0.46 at 30 recipients ended at 0.39 and 0.46 at 90, 270
    /// images each, and did not count). Any other row counts as measured: stopped above the
    /// strongest, it would become the class's figure on its first recipients.
    fn no_higher(&self, rates: &Rates, reopenable: bool, needs_loss: bool) -> bool {
        let margin = if needs_loss {
            rates.effect_error()
        } else {
            0.0
        };
        self.flagged_for_good(reopenable) && rates.specific() - margin <= self.bar()
    }
}

/// What a row's transplant measured, look by look.
pub(crate) struct Looked {
    pub(crate) measured: Transplanted,
    /// Whether it stopped before the last look for not reaching the bar (or, in a settled
    /// class, its strongest).
    pub(crate) stopped_short: bool,
    /// Whether it stopped because it surely flags, or surely flags on every recipient.
    pub(crate) surely: bool,
    /// Whether its first part's recipients left the flag open (`Rates::undecided`) where there
    /// are later ones and it did not go on to them.
    pub(crate) open: bool,
}

/// The group's transplant and its controls, look by look (`members::looks`): the next
/// recipients only while the effect so far could still reach the bar (and, in a settled
/// class, exceeds its strongest: `Standing::no_higher`), and, from the second look on, until
/// it surely flags (`Rates::surely_flags`: the rest would not change the verdict). Within a
/// look the group's transplant comes first, and its controls only where it alone could reach
/// the bar (`Rates::could_flag_alone`: the flag, or the class's strongest row once one has
/// reached the flag, `Standing::bar`): most groups turn no recipient, and their controls were
/// most of their cost.
pub(crate) fn transplant_in_looks(
    (scorer, images, first_look): (&mut dyn Scorer, &dyn ImageSource, usize),
    (plan, apply, sides): (&Plan, &Apply<'_>, &Sides<'_>),
    recipients: &Recipients,
    (k, standing, later, needs_loss): (usize, Standing, bool, bool),
) -> Result<Looked> {
    let bar = standing.bar();
    let looks = looks(recipients.first_count(), first_look);
    let reopenable = recipients.count() > recipients.first_count();
    let mut measured = Transplanted::new(recipients.count(), control_carriers(plan, sides).len());
    let short = |measured| Looked {
        measured,
        stopped_short: true,
        surely: false,
        open: false,
    };
    for (i, look) in looks.iter().enumerate() {
        let last = i + 1 == looks.len();
        measured.give_group(scorer, (apply, plan), sides, recipients, look)?;
        if !last && !measured.rates(recipients, k).could_flag_alone(bar) {
            return Ok(short(measured));
        }
        // On the last look every control is measured: the row's figures rest on all of them.
        let enough = |m: &Transplanted| !last && !m.rates(recipients, k).could_flag(bar);
        measured.give_controls(scorer, (apply, plan), sides, (recipients, look), &enough)?;
        let rates = measured.rates(recipients, k);
        if !last && (!rates.could_flag(bar) || standing.no_higher(&rates, reopenable, needs_loss)) {
            return Ok(short(measured));
        }
        // Surely flagged: the rest of the recipients would change the figure, not the
        // verdict. Its occlusion is still measured in full (the row may carry the class).
        if !last && i > 0 && rates.surely_flags() {
            return Ok(Looked {
                measured,
                stopped_short: false,
                surely: true,
                open: false,
            });
        }
    }
    // On every recipient of the first part with the flag still open: where asked (`later`),
    // more recipients, in looks three times the recipients so far, until the effect is two
    // standard errors clear of the flag either way (`Rates::undecided`) or they are used up.
    // Only the control that was the stronger on the first part is measured on them: the
    // effect is taken against it, paired recipient by recipient (the weaker keeps its rate
    // on the first part, and counts should it read higher), and a second control on a
    // thousand recipients was a third of what going on cost.
    let more = later_looks(recipients.first_count(), recipients.count());
    let mut open = !more.is_empty() && measured.rates(recipients, k).undecided();
    if later && open {
        open = false;
        recipients.load_later(images)?;
        let stronger = measured.stronger_control(recipients, k);
        for look in &more {
            measured.give_group(scorer, (apply, plan), sides, recipients, look)?;
            measured.give_control(scorer, (apply, plan), sides, (recipients, look), stronger)?;
            if !measured.rates(recipients, k).undecided() {
                break;
            }
        }
    }
    // Surely flagged or not (not on a single look, where ten recipients that all turn read a
    // standard error of 0).
    let surely = looks.len() > 1 && measured.rates(recipients, k).surely_flags();
    Ok(Looked {
        measured,
        stopped_short: false,
        surely,
        open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(flip: f64, control: f64, eligible: usize) -> Rates {
        Rates {
            flip,
            control,
            gain: 0.0,
            measured: eligible,
            control_measured: eligible,
            eligible,
            paired: None,
        }
    }

    /// Two classes' logits: class 0 wins where the recipient `turned`, else class 1.
    fn logits(turned: bool) -> Vec<f32> {
        if turned {
            vec![1.0, 0.0]
        } else {
            vec![0.0, 1.0]
        }
    }

    /// Hand-computed: ten recipients of class 1 (class 0 under test). The group turns
    /// recipients 0–4, the stronger control (0.4) 0–3, the weaker (0.1) recipient 9: one
    /// discordant pair for the stronger, b = 1, c = 0. With half a recipient in each cell,
    /// b' = 1.5/12, c' = 0.5/12, Var = 2/12 − (1/12)² = 0.1597, SE = √(0.1597/12) = 0.1154:
    /// the effect 0.1 could reach 0.33, not 0.35 — where two independent rates' SE (0.221)
    /// would leave room up to 0.54.
    #[test]
    fn the_effect_error_pairs_each_recipient_with_the_stronger_control() {
        let recipients = Recipients::scored(vec![logits(false); 10]);
        let mut t = Transplanted::new(10, 2);
        let all: Vec<usize> = (0..10).collect();
        t.record(None, &all, all.iter().map(|&p| logits(p < 5)).collect());
        t.record(Some(0), &all, all.iter().map(|&p| logits(p == 9)).collect());
        t.record(Some(1), &all, all.iter().map(|&p| logits(p < 4)).collect());
        let r = t.rates(&recipients, 0);
        assert_eq!((r.flip, r.control, r.eligible), (0.5, 0.4, 10));
        let (v, n) = r.paired.expect("controls on every recipient");
        assert_eq!(n, 12.0);
        assert!((v - (2.0 / 12.0 - 1.0 / 144.0)).abs() < 1e-12, "{v}");
        assert!((r.effect_error() - 0.11537).abs() < 1e-4);
        assert!(r.could_flag(0.33) && !r.could_flag(0.35));
        assert!((r.standard_error(0.4) - 0.2214).abs() < 1e-4);
    }

    /// A control a row stopped before (`give_controls`: its first control already left the
    /// look unable to reach the bar) is not read as turning no recipient: each control's rate
    /// is over the recipients it was measured on, and the effect is paired only with a
    /// stronger control measured on every one.
    #[test]
    fn a_control_not_measured_is_not_read_as_turning_none() {
        let recipients = Recipients::scored(vec![logits(false); 10]);
        let mut t = Transplanted::new(10, 2);
        let all: Vec<usize> = (0..10).collect();
        t.record(None, &all, all.iter().map(|&p| logits(p < 3)).collect());
        t.record(Some(0), &all, all.iter().map(|&p| logits(p < 2)).collect());
        let r = t.rates(&recipients, 0);
        assert_eq!((r.flip, r.control, r.control_measured), (0.3, 0.2, 10));
        assert!(r.paired.is_some(), "paired with the first control");
        // The second control on half the recipients, turning each: its rate is 1.0 over
        // those five, and no pairing rests on it.
        let half: Vec<usize> = (0..5).collect();
        t.record(Some(1), &half, vec![logits(true); 5]);
        let r = t.rates(&recipients, 0);
        assert_eq!(r.control, 1.0);
        assert!(r.paired.is_none());
    }

    /// A settled class's later row stops where its effect so far does not exceed the class's
    /// strongest (0.4 − 0.1 = 0.3 against 0.5; a tie); a row whose count needs its loss also
    /// where it is not more than one standard error above (0.55 ± 0.106 against 0.5), which
    /// any other row, stopped there, would replace the strongest by; 0.8 ± 0.077 goes on
    /// either way. So does a row of a class at the flag by estimate, not surely, where no row
    /// is measured again; an open class's never does.
    #[test]
    fn a_class_flagged_for_good_follows_only_a_row_above_its_strongest() {
        let settled = Standing {
            strongest: Some(0.5),
            settled: true,
        };
        assert_eq!(settled.bar(), 0.5);
        for (reopenable, needs_loss) in [(false, false), (true, false), (false, true)] {
            let stops = |r: Rates| settled.no_higher(&r, reopenable, needs_loss);
            assert!(stops(rates(0.4, 0.1, 10)));
            assert!(stops(rates(0.75, 0.25, 30)), "a tie is no higher");
            assert!(!stops(rates(0.9, 0.1, 30)));
            assert_eq!(
                stops(rates(0.7, 0.15, 30)),
                needs_loss,
                "above by less than its error"
            );
        }
        // At the flag by estimate: for good only where no later step reopens the verdict.
        let at_flag = Standing {
            settled: false,
            ..settled
        };
        assert!(at_flag.no_higher(&rates(0.4, 0.1, 10), false, false));
        assert!(!at_flag.no_higher(&rates(0.4, 0.1, 10), true, false));
        assert!(!at_flag.no_higher(&rates(0.9, 0.1, 30), false, true));
        // Below the flag the bar is the flag, and nothing stops a row but its own reach.
        let weak = Standing {
            strongest: Some(0.1),
            settled: false,
        };
        assert_eq!(weak.bar(), spray_store::ranking::FLAG_SPECIFIC_EFFECT);
        assert!(!weak.no_higher(&rates(0.0, 0.0, 10), false, true));
        assert!(!Standing::default().no_higher(&rates(0.0, 0.0, 10), false, false));
    }

    /// Hand-computed: the effect ± two standard errors of the two rates, against the bar.
    #[test]
    fn the_stopping_rules_read_two_standard_errors_against_the_bar() {
        // Alone: 0 of 10 cannot reach the flag, 1 of 10 neither (0.1 + 2 · 0.095 = 0.29),
        // 2 of 10 can (0.2 + 2 · 0.126 = 0.45) — but not a bar of 0.5.
        assert!(!rates(0.0, 0.0, 10).could_flag_alone(0.3));
        assert!(!rates(0.1, 0.0, 10).could_flag_alone(0.3));
        assert!(rates(0.2, 0.0, 10).could_flag_alone(0.3));
        assert!(!rates(0.2, 0.0, 10).could_flag_alone(0.5));
        // Against its control: 0.2 vs 0.2 on 30 recipients, 0 + 2 · 0.103 = 0.21 < 0.3; on
        // 10, 0 + 2 · 0.179 = 0.36 leaves room.
        assert!(!rates(0.2, 0.2, 30).could_flag(0.3));
        assert!(rates(0.2, 0.2, 10).could_flag(0.3));
        // Surely flagged: 0.8 − 2 · 0.073 = 0.65 on 30; 0.4 − 2 · 0.089 = 0.22 is not.
        assert!(rates(0.8, 0.0, 30).surely_flags());
        assert!(!rates(0.4, 0.0, 30).surely_flags());
        // Nothing measured: always room, never sure.
        assert!(rates(0.0, 0.0, 0).could_flag(0.3) && !rates(0.0, 0.0, 0).surely_flags());
        assert!(!rates(0.0, 0.0, 10).screened());
        assert_eq!(
            Standing::of(&[], false).bar(),
            spray_store::ranking::FLAG_SPECIFIC_EFFECT
        );
    }
}
