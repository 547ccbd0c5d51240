//! A group's one neighbour search: how many neighbours the graph and t-SNE need, and whether
//! they are found exactly or by NN-descent.

use ndarray16::ArrayView2;

use crate::ann;
use crate::graph::{self, KnnTable};
use crate::progress::StepObserver;
use crate::settings::{AnalysisSettings, KnnSearch};

/// The neighbour search of a group of `n` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeighbourSearch {
    /// Neighbours per vertex of the kNN graph.
    pub graph_k: usize,
    /// Neighbours Barnes–Hut t-SNE reads (3 · perplexity), when the group is above t-SNE's
    /// exact limit; `None`: exact t-SNE, which needs no table.
    pub tsne_k: Option<usize>,
    /// NN-descent instead of the exact search.
    pub approximate: bool,
}

impl NeighbourSearch {
    pub fn plan(n: usize, settings: &AnalysisSettings) -> NeighbourSearch {
        let tsne_k = (n > settings.tsne.exact_limit)
            .then(|| (3.0 * settings.tsne.perplexity).ceil() as usize);
        NeighbourSearch {
            graph_k: settings.k.unwrap_or_else(|| graph::default_k(n)),
            tsne_k,
            approximate: match settings.knn {
                KnnSearch::Auto => n > settings.exact_knn_limit,
                KnnSearch::Exact => false,
                KnnSearch::Approximate => true,
            },
        }
    }

    /// One search for both the graph and t-SNE: the wider of the two.
    pub fn k(&self) -> usize {
        self.graph_k.max(self.tsne_k.unwrap_or(0))
    }

    /// The table of the `k()` nearest neighbours of every point.
    pub fn run(
        &self,
        points: ArrayView2<'_, f32>,
        seed: u64,
        progress: &dyn StepObserver,
    ) -> KnnTable {
        if self.approximate {
            ann::knn_observed(
                points,
                self.k(),
                &ann::NnDescentSettings {
                    seed,
                    ..ann::NnDescentSettings::default()
                },
                progress,
            )
        } else {
            graph::knn_observed(points, self.k(), progress)
        }
    }

    /// t-SNE's table: the search's own when t-SNE wants all of it (the usual case:
    /// 3 · perplexity ≥ k), so the largest table is not copied.
    pub fn tsne_table<'t>(&self, wide: &'t KnnTable) -> Option<std::borrow::Cow<'t, KnnTable>> {
        self.tsne_k.map(|t| {
            if t >= wide.k {
                std::borrow::Cow::Borrowed(wide)
            } else {
                std::borrow::Cow::Owned(wide.truncated(t))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_search_exactly_for_the_graph_alone() {
        let settings = AnalysisSettings::default();
        let plan = NeighbourSearch::plan(100, &settings);
        assert_eq!(plan.graph_k, graph::default_k(100));
        assert_eq!(plan.tsne_k, None);
        assert!(!plan.approximate);
        assert_eq!(plan.k(), plan.graph_k);
    }

    #[test]
    fn large_groups_search_once_for_the_graph_and_t_sne() {
        let settings = AnalysisSettings {
            exact_knn_limit: 1000,
            k: Some(200),
            ..AnalysisSettings::default()
        };
        let n = settings.tsne.exact_limit.max(1000) + 1;
        let plan = NeighbourSearch::plan(n, &settings);
        let tsne_k = (3.0 * settings.tsne.perplexity).ceil() as usize;
        assert_eq!(plan.tsne_k, Some(tsne_k));
        assert!(plan.approximate);
        assert_eq!(plan.k(), tsne_k.max(200));
    }

    #[test]
    fn the_setting_overrides_the_size_rule() {
        let exact = AnalysisSettings {
            knn: KnnSearch::Exact,
            exact_knn_limit: 10,
            ..AnalysisSettings::default()
        };
        assert!(!NeighbourSearch::plan(1000, &exact).approximate);
        let approximate = AnalysisSettings {
            knn: KnnSearch::Approximate,
            ..AnalysisSettings::default()
        };
        assert!(NeighbourSearch::plan(10, &approximate).approximate);
    }

    #[test]
    fn t_sne_borrows_the_table_it_wants_whole() {
        let table = KnnTable {
            k: 2,
            neighbors: vec![vec![(1, 0.5), (2, 1.0)], vec![(0, 0.5), (2, 0.7)]],
        };
        let wide = NeighbourSearch {
            graph_k: 2,
            tsne_k: Some(3),
            approximate: false,
        };
        assert!(matches!(
            wide.tsne_table(&table),
            Some(std::borrow::Cow::Borrowed(_))
        ));
        let narrow = NeighbourSearch {
            tsne_k: Some(1),
            ..wide
        };
        let Some(std::borrow::Cow::Owned(t)) = narrow.tsne_table(&table) else {
            panic!("a narrower t-SNE table is a copy");
        };
        assert_eq!(t.k, 1);
        let exact = NeighbourSearch {
            tsne_k: None,
            ..wide
        };
        assert!(exact.tsne_table(&table).is_none());
    }
}
