//! `[report]` of the pipeline file: what the page shows and how much of it.

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Page title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Classes with a page of their own (the top of the ranking); none set: every class. Each
    /// page holds one class's pictures, so the report's size grows with this, a page's does not.
    #[serde(default)]
    pub detail_classes: Option<usize>,
    /// Per class, samples whose thumbnail and heatmap are embedded for the scatter plot's
    /// preview (the most central of each cluster first); bounds the page size.
    #[serde(default = "default_examples")]
    pub examples_per_class: usize,
    /// Most central samples shown per cluster.
    #[serde(default = "default_montage")]
    pub montage: usize,
    /// Eigenvalues per class in the overview chart (thesis Fig 6.5 uses 5).
    #[serde(default = "default_overview")]
    pub overview_eigenvalues: usize,
}

fn default_title() -> String {
    "spray report".into()
}
fn default_examples() -> usize {
    30
}
fn default_montage() -> usize {
    8
}
fn default_overview() -> usize {
    5
}

impl ReportSettings {
    /// How many of `classes` ranked classes get a page.
    pub fn class_pages(&self, classes: usize) -> usize {
        self.detail_classes.unwrap_or(classes).min(classes)
    }
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            title: default_title(),
            detail_classes: None,
            examples_per_class: default_examples(),
            montage: default_montage(),
            overview_eigenvalues: default_overview(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_is_the_default_and_unknown_keys_are_refused() {
        let empty: ReportSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, ReportSettings::default());
        let some: ReportSettings = serde_json::from_str(r#"{"montage": 3}"#).unwrap();
        assert_eq!(some.montage, 3);
        assert_eq!(some.detail_classes, None);
        assert_eq!(some.class_pages(1000), 1000);
        let top: ReportSettings = serde_json::from_str(r#"{"detail_classes": 50}"#).unwrap();
        assert_eq!(top.class_pages(1000), 50);
        assert_eq!(top.class_pages(10), 10);
        assert!(serde_json::from_str::<ReportSettings>(r#"{"montages": 3}"#).is_err());
    }
}
