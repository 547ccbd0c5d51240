//! A class's verdict that its first recipients left open (`[verify] verdict_images`): where
//! no row surely flags the class, its strongest counting rows within two standard errors of
//! the flag, either side, are measured again and on to the later recipients
//! (`transplant::transplant_in_looks`), the strongest first, until one ends at the flag or
//! above it.

use spray_store::verify::Evidence;
use spray_store::EvidenceTest;

use crate::evidence::{pixel_row, Bench, ClassBench};
use crate::probe::PlanFn;
use crate::transplant::Standing;
use crate::Result;

/// At most this many rows of a class whose verdict its first recipients left open go on to
/// the later ones (`verdict_images`), the strongest first. Why not one: the strongest on a
/// hundred recipients is itself known to ±0.09; why not all: each costs up to three times
/// `verdict_images` images scored, and a class's rows near the flag are mostly the same
/// images found in several spaces.
pub(crate) const DECIDED_ROWS: usize = 2;

/// A counting row whose verdict the first recipients left open.
pub(crate) struct OpenRow {
    /// Its place among the class's rows.
    pub(crate) row: usize,
    /// Its group's place among the tested groups, then the reserve.
    pub(crate) at: usize,
    pub(crate) test: EvidenceTest,
    pub(crate) plan: PlanFn,
}

/// Decide the `open` rows of a class whose rows so far are `evidence` (`settled`: one surely
/// flagged it), replacing each row measured on.
pub(crate) fn decide_open(
    bench: &mut Bench<'_>,
    each: &ClassBench<'_>,
    evidence: &mut [Evidence],
    mut open: Vec<OpenRow>,
    mut settled: bool,
) -> Result<()> {
    open.sort_by_key(|o| std::cmp::Reverse(evidence[o.row].effect_key()));
    for o in open.into_iter().take(DECIDED_ROWS) {
        if settled {
            break;
        }
        let (tested, reserve) = each.tested;
        let Some(group) = tested.iter().chain(reserve).nth(o.at) else {
            continue;
        };
        // Measured again as it was, then on. The bar is the flag: a counting row at the flag
        // or above that is not open surely flags, and none did; so its first part is what it
        // was.
        let standing = Standing {
            strongest: None,
            settled: false,
        };
        let Some((again, looked)) =
            pixel_row(bench, each, group, (o.test, o.plan), standing, true)?
        else {
            continue;
        };
        let flags =
            again.counts() && again.specific() >= spray_store::ranking::FLAG_SPECIFIC_EFFECT;
        settled |= looked.surely && again.counts();
        evidence[o.row] = again;
        if flags {
            break;
        }
    }
    Ok(())
}
