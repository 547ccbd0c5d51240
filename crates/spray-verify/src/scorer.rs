//! What the stage asks of the model: logits for prepared tensors. Behind a trait so that the
//! evidence logic can be tested with a small model in memory, without ONNX Runtime.

use spray_dataset::TensorLayout;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use spray_engine::{CompiledModel, OptimizedCache, Predictor, SessionConfig, SteeredPredictor};
use spray_lrp::LrpModel;

use crate::{Result, VerifyError};

/// Prepared CHW tensors in, one row of pre-softmax logits out per tensor; and, for the
/// model-side test, the same with a concept layer's activation read out or moved.
pub trait Scorer {
    fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>>;
    /// Tensors scored so far (plain and steered).
    fn images_scored(&self) -> usize;
    /// The concept layers that can be steered, by node name (none: no model-side test).
    fn layers(&self) -> Vec<String> {
        Vec::new()
    }
    /// Per tensor, the flattened activation of concept layer `layer`.
    fn activations(&mut self, layer: usize, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let _ = tensors;
        Err(VerifyError::NoLayer(layer))
    }
    /// The logits with `offsets` added to the activation of `layer`: one offset for every
    /// tensor, or one per tensor.
    fn steered_logits(
        &mut self,
        layer: usize,
        tensors: &[Vec<f32>],
        offsets: Offsets<'_>,
    ) -> Result<Vec<Vec<f32>>> {
        let _ = (tensors, offsets);
        Err(VerifyError::NoLayer(layer))
    }
}

/// What is added to a steered layer's activation (flattened like [`Scorer::activations`]).
#[derive(Debug, Clone, Copy)]
pub enum Offsets<'a> {
    /// The same direction for every tensor.
    Shared(&'a [f32]),
    /// One per tensor, in order.
    PerTensor(&'a [Vec<f32>]),
}

impl Offsets<'_> {
    /// The offset of tensor `i`.
    pub fn get(&self, i: usize) -> &[f32] {
        match self {
            Offsets::Shared(d) => d,
            Offsets::PerTensor(all) => &all[i],
        }
    }
}

/// Steered batches' outputs, one row per tensor.
struct SteeredRows {
    logits: Vec<Vec<f32>>,
    activations: Vec<Vec<f32>>,
}

/// The model's logits through ONNX Runtime, in batches: the compiled model's forward half
/// ([`LrpModel::forward_model`]: the relevance stage's logits, without its backward pass),
/// and its steered twins ([`LrpModel::steered_model`]), one session per concept layer, made
/// when a model-side test first asks.
pub struct ForwardScorer<'m> {
    model: &'m CompiledModel<'m>,
    /// The compiled graph, once a session had to be made from it.
    graph: Option<Cow<'m, LrpModel>>,
    session: SessionConfig,
    /// Its own session; lent to another worker's scorer once this one has no class left
    /// (`SessionPool`).
    predictor: Arc<Mutex<Predictor>>,
    /// The workers' sessions, where there are several: an idle one's scores half of a
    /// request's batches.
    pool: Option<(Arc<SessionPool>, usize)>,
    steered: Vec<Option<SteeredPredictor>>,
    /// Input height and width.
    size: [usize; 2],
    layout: TensorLayout,
    batch_size: usize,
    scored: usize,
}

impl<'m> ForwardScorer<'m> {
    /// With `cache`: the forward graph's session loaded from ONNX Runtime's kept graph where it
    /// holds it (the forward model neither cut nor optimised again), else kept there.
    pub fn new(
        model: &'m CompiledModel<'m>,
        session: SessionConfig,
        (size, layout): ([usize; 2], TensorLayout),
        batch_size: usize,
        cache: Option<&OptimizedCache>,
    ) -> Result<Self> {
        let kept = match cache {
            Some(cache) => Predictor::from_cache(cache, session)?,
            None => None,
        };
        let mut graph = None;
        let predictor = match kept {
            Some(predictor) => predictor,
            None => {
                let compiled = model.graph().map_err(VerifyError::LoadModel)?;
                let forward = spray_onnx::encode_model(&compiled.forward_model());
                graph = Some(compiled);
                match cache {
                    Some(cache) => {
                        Predictor::new_cached(&forward, session, cache, model.signature())?
                    }
                    None => Predictor::new(&forward, session)?,
                }
            }
        };
        let layers = model
            .signature()
            .concept
            .as_ref()
            .map_or(0, |c| c.layers.len());
        Ok(ForwardScorer {
            model,
            graph,
            session,
            predictor: Arc::new(Mutex::new(predictor)),
            pool: None,
            steered: (0..layers).map(|_| None).collect(),
            size,
            layout,
            batch_size: batch_size.max(1),
            scored: 0,
        })
    }

    /// This worker has no class left: its session may score other workers' batches
    /// (`SessionPool`).
    pub(crate) fn lend(&self) {
        if let Some((pool, me)) = &self.pool {
            pool.lend(*me);
        }
    }

    /// The steered session of `layer`, made on first use.
    fn steered(&mut self, layer: usize) -> Result<&mut SteeredPredictor> {
        let slot = self
            .steered
            .get_mut(layer)
            .ok_or(VerifyError::NoLayer(layer))?;
        if slot.is_none() {
            if self.graph.is_none() {
                self.graph = Some(self.model.graph().map_err(VerifyError::LoadModel)?);
            }
            let graph = self.graph.as_ref().expect("loaded above");
            let model = graph.steered_model(layer)?;
            *slot = Some(SteeredPredictor::new(&model, self.session)?);
        }
        Ok(slot.as_mut().expect("made above"))
    }

    /// Steered batches: per batch the offsets as one array (`[1, …]` when shared), then the
    /// logits and activations as rows.
    fn run_steered(
        &mut self,
        layer: usize,
        tensors: &[Vec<f32>],
        offsets: Option<Offsets<'_>>,
    ) -> Result<SteeredRows> {
        let (mut logits, mut activations) = (Vec::new(), Vec::new());
        let batch_size = self.batch_size;
        for (b, chunk) in tensors.chunks(batch_size).enumerate() {
            let input = batch_input((self.size, self.layout), chunk)?;
            let shared;
            let per_tensor;
            let offset = match offsets {
                None => None,
                Some(Offsets::Shared(d)) => {
                    shared = ndarray::ArrayView2::from_shape((1, d.len()), d)
                        .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
                    Some(shared)
                }
                Some(Offsets::PerTensor(all)) => {
                    let rows = &all[b * batch_size..b * batch_size + chunk.len()];
                    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
                    per_tensor = ndarray::Array2::from_shape_vec((rows.len(), rows[0].len()), flat)
                        .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
                    Some(per_tensor.view())
                }
            };
            let out = self.steered(layer)?.run(input.view(), offset)?;
            let n = chunk.len();
            let flat_rows = |a: ndarray::ArrayD<f32>| -> Result<Vec<Vec<f32>>> {
                let a = a.as_standard_layout().into_owned();
                let per = a.len() / n.max(1);
                let rows = a
                    .into_shape_with_order((n, per))
                    .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
                Ok(rows.rows().into_iter().map(|r| r.to_vec()).collect())
            };
            logits.extend(flat_rows(out.logits)?);
            activations.extend(flat_rows(out.activation)?);
            self.scored += n;
        }
        Ok(SteeredRows {
            logits,
            activations,
        })
    }
}

impl Scorer for ForwardScorer<'_> {
    /// In batches of `batch_size`, on its own session; where a request has several batches
    /// and another worker's session is idle, every second batch runs there at the same time.
    /// The batches are the same either way, and every session is made the same way, so the
    /// logits do not depend on which session ran them.
    fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let chunks: Vec<&[Vec<f32>]> = tensors.chunks(self.batch_size).collect();
        let shape = (self.size, self.layout);
        let lent = match &self.pool {
            Some((pool, me)) if chunks.len() > 1 => pool.borrow_idle(*me),
            _ => None,
        };
        let batches: Vec<Rows> = match lent {
            None => chunks
                .iter()
                .map(|c| score_batch(shape, &self.predictor, c))
                .collect::<Result<_>>()?,
            Some(other) => {
                let own = &self.predictor;
                let (even, odd) = std::thread::scope(|scope| {
                    let helper = scope.spawn(|| {
                        chunks
                            .iter()
                            .skip(1)
                            .step_by(2)
                            .map(|c| score_batch(shape, &other, c))
                            .collect::<Result<Vec<Rows>>>()
                    });
                    let even = chunks
                        .iter()
                        .step_by(2)
                        .map(|c| score_batch(shape, own, c))
                        .collect::<Result<Vec<Rows>>>();
                    let odd = helper
                        .join()
                        .unwrap_or(Err(VerifyError::Panicked("a lent session")));
                    (even, odd)
                });
                let (mut even, mut odd) = (even?.into_iter(), odd?.into_iter());
                (0..chunks.len())
                    .map_while(|i| if i % 2 == 0 { even.next() } else { odd.next() })
                    .collect()
            }
        };
        self.scored += tensors.len();
        Ok(batches.into_iter().flatten().collect())
    }

    fn images_scored(&self) -> usize {
        self.scored
    }

    fn layers(&self) -> Vec<String> {
        self.model
            .signature()
            .concept
            .as_ref()
            .map(|c| c.layers.iter().map(|l| l.node.clone()).collect())
            .unwrap_or_default()
    }

    fn activations(&mut self, layer: usize, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        Ok(self.run_steered(layer, tensors, None)?.activations)
    }

    fn steered_logits(
        &mut self,
        layer: usize,
        tensors: &[Vec<f32>],
        offsets: Offsets<'_>,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self.run_steered(layer, tensors, Some(offsets))?.logits)
    }
}

/// A batch of prepared CHW tensors of input `size` as the model's input in `layout`.
fn batch_input(
    (size, layout): ([usize; 2], TensorLayout),
    chunk: &[Vec<f32>],
) -> Result<ndarray::ArrayD<f32>> {
    let [h, w] = size;
    // One allocation and a copy per tensor (collecting the flattened iterator grew the
    // vector as it went and copied element by element: a twentieth of the stage).
    let mut flat = Vec::with_capacity(chunk.iter().map(Vec::len).sum());
    chunk.iter().for_each(|t| flat.extend_from_slice(t));
    let mut input = ndarray::ArrayD::from_shape_vec(vec![chunk.len(), 3, h, w], flat)
        .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
    if layout == TensorLayout::Nhwc {
        input = input
            .permuted_axes(vec![0, 2, 3, 1])
            .as_standard_layout()
            .into_owned();
    }
    Ok(input)
}

/// The logits of one batch on `predictor`.
fn score_batch(
    shape: ([usize; 2], TensorLayout),
    predictor: &Mutex<Predictor>,
    chunk: &[Vec<f32>],
) -> Result<Rows> {
    let input = batch_input(shape, chunk)?;
    // A poisoned lock still holds a whole session: a panic elsewhere stops the stage anyway.
    let logits = lock(predictor).predict(input.view())?;
    let rows = logits
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| VerifyError::TensorShape(e.to_string()))?;
    Ok(rows.rows().into_iter().map(|row| row.to_vec()).collect())
}

/// One batch's logits, a row per tensor.
type Rows = Vec<Vec<f32>>;

fn lock<S>(session: &Mutex<S>) -> MutexGuard<'_, S> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The workers' sessions (`stage::run`), which they lend each other: a worker with no class
/// left marks its session idle (`lend`), and a worker still at work scores half of a
/// request's batches on it (`ForwardScorer::logits`). Why: the classes are the stage's unit
/// of work, and they cost unevenly — a shortcut class whose effects sit near the flag is
/// measured on every recipient, many times over (photos-vit's caption class: a third of the
/// stage's images) — so the last class ran on one core while the others idled (simulated
/// from the per-class counts: 3–26% longer than an even split on the realistic scenarios).
pub(crate) struct SessionPool<S = Predictor> {
    sessions: Vec<Arc<Mutex<S>>>,
    idle: Vec<AtomicBool>,
}

impl SessionPool {
    /// Pools `scorers`' sessions; each scorer holds the pool and its place in it.
    pub(crate) fn join(scorers: &mut [ForwardScorer<'_>]) {
        let pool = Arc::new(SessionPool::of(
            scorers.iter().map(|s| Arc::clone(&s.predictor)).collect(),
        ));
        for (me, scorer) in scorers.iter_mut().enumerate() {
            scorer.pool = Some((Arc::clone(&pool), me));
        }
    }
}

impl<S> SessionPool<S> {
    /// `sessions`, none of them idle yet.
    fn of(sessions: Vec<Arc<Mutex<S>>>) -> Self {
        let idle = sessions.iter().map(|_| AtomicBool::new(false)).collect();
        SessionPool { sessions, idle }
    }

    /// Worker `me` has no class left: its session may score others' batches.
    pub(crate) fn lend(&self, me: usize) {
        if let Some(idle) = self.idle.get(me) {
            idle.store(true, Ordering::Release);
        }
    }

    /// An idle session other than `me`'s that is free at this moment (none: score alone).
    /// Not reserved: with three or more workers two may borrow the same idle session, and
    /// its lock then runs their batches one after the other — never two locks held by one
    /// thread, so never a deadlock.
    fn borrow_idle(&self, me: usize) -> Option<Arc<Mutex<S>>> {
        (0..self.sessions.len())
            .filter(|&j| j != me && self.idle[j].load(Ordering::Acquire))
            .find_map(|j| {
                let free = self.sessions[j].try_lock().is_ok();
                free.then(|| Arc::clone(&self.sessions[j]))
            })
    }
}

/// The index of the largest logit.
pub(crate) fn predicted(logits: &[f32]) -> usize {
    spray_engine::argmax(logits.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session is lent only by a worker that said it has no class left, never to itself,
    /// and only while no one else holds it.
    #[test]
    fn only_an_idle_free_session_of_another_worker_is_borrowed() {
        let sessions: Vec<Arc<Mutex<usize>>> = (0..3).map(|i| Arc::new(Mutex::new(i))).collect();
        let pool = SessionPool::of(sessions);
        let borrowed = |me| pool.borrow_idle(me).map(|s| *lock(&s));
        assert_eq!(borrowed(0), None, "no one is idle");
        pool.lend(2);
        assert_eq!(borrowed(0), Some(2));
        assert_eq!(borrowed(1), Some(2));
        assert_eq!(borrowed(2), None, "not its own");
        let held = pool.sessions[2].lock().unwrap();
        assert_eq!(borrowed(0), None, "in use");
        drop(held);
        pool.lend(1);
        assert_eq!(borrowed(2), Some(1));
        pool.lend(7);
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A linear model over the flat tensor: logits = W x. Small enough to reason about by
    //! hand, which is what the evidence logic's tests need.
    use super::*;

    pub struct LinearModel {
        /// One row of weights per class.
        pub weights: Vec<Vec<f32>>,
        pub scored: usize,
    }

    impl Scorer for LinearModel {
        fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
            self.scored += tensors.len();
            Ok(tensors
                .iter()
                .map(|t| {
                    self.weights
                        .iter()
                        .map(|w| w.iter().zip(t).map(|(a, b)| a * b).sum())
                        .collect()
                })
                .collect())
        }

        fn images_scored(&self) -> usize {
            self.scored
        }
    }

    /// The linear model with its input as the one steerable layer: activation = x, steered
    /// logits = W (x + offset).
    pub struct SteerableLinear(pub LinearModel);

    impl Scorer for SteerableLinear {
        fn logits(&mut self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
            self.0.logits(tensors)
        }

        fn images_scored(&self) -> usize {
            self.0.scored
        }

        fn layers(&self) -> Vec<String> {
            vec!["input".into()]
        }

        fn activations(&mut self, layer: usize, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
            assert_eq!(layer, 0);
            self.0.scored += tensors.len();
            Ok(tensors.to_vec())
        }

        fn steered_logits(
            &mut self,
            layer: usize,
            tensors: &[Vec<f32>],
            offsets: Offsets<'_>,
        ) -> Result<Vec<Vec<f32>>> {
            assert_eq!(layer, 0);
            let moved: Vec<Vec<f32>> = tensors
                .iter()
                .enumerate()
                .map(|(i, t)| t.iter().zip(offsets.get(i)).map(|(a, b)| a + b).collect())
                .collect();
            self.0.logits(&moved)
        }
    }

    #[test]
    fn the_linear_model_is_w_times_x() {
        let mut m = LinearModel {
            weights: vec![vec![1.0, 0.0], vec![0.5, 2.0]],
            scored: 0,
        };
        assert_eq!(m.logits(&[vec![2.0, 1.0]]).unwrap(), vec![vec![2.0, 3.0]]);
        assert_eq!(m.images_scored(), 1);
        assert_eq!(predicted(&[0.1, 0.9, 0.2]), 1);
    }
}
