//! The feature spaces: every space the analysis groups a class's samples in, and the one
//! table ([`SPACES`]) that says what each is — what its features are made of, whether it gets
//! a t-SNE embedding, whether its groups are suspects, how the verify stage tests them
//! ([`EvidenceTest`]), how its files and report sentences name it. Stages ask the table
//! (`space.spec()`), never match on the space themselves, so a new space is one row here
//! (plus, when its features or its test are new, one variant of [`FeatureSource`] or
//! [`EvidenceTest`] and its implementation in the stage that computes it).

/// Which features a spectrum or embedding was computed on; the value of the `space` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FeatureSpace {
    /// The relevance maps (what SpRAy analyses).
    #[default]
    Relevance,
    /// The downsized input images: the baseline that tells structure the images already have
    /// from structure only the explanations have.
    Image,
    /// The relevance per channel of the relevance dataset's concept layer i
    /// (`RelevanceLayout::concept_layers[i]`): where explanations differ in *which features*
    /// carry the logit rather than where in the image.
    Concept(u8),
    /// Each image's global colour statistics (`relevance::colour_stats`): a shortcut that is a
    /// colour — a cast, a white balance — is in no pixel heatmap (relevance is summed over
    /// channels) and, when the rules at the input are flat, in no channel profile either; its
    /// groups are suspects that the verify stage tests by transferring the colour.
    Colour,
}

/// What a space's feature vectors are built from (stage 2 builds them, `spray_analyze`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSource {
    /// The relevance map pooled to the analysis grid, blurred, signed and normalised.
    RelevanceGrid,
    /// The input image pooled to the analysis grid.
    ImageGrid,
    /// The per-channel relevance of one concept layer.
    ConceptChannels,
    /// Per-channel mean and log spread of the image at full resolution.
    ColourStatistics,
}

/// How a space's samples are laid out in 2-D for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout2d {
    /// Barnes–Hut t-SNE on the kNN graph (the report draws this space's scatter).
    Tsne,
    /// The spectral start alone (principal axes of the leading eigenvectors). Why: t-SNE is
    /// most of a group's time (0.7 of 0.8 s at n = 1,300) and the report draws only the
    /// relevance space's scatter.
    SpectralStart,
}

/// The part a space plays in the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceRole {
    /// Groups of explanations: computed from LRP, their structure is itself a suspicion.
    Explanation,
    /// The image baseline: what the explanations' structure is compared against; never a
    /// suspect.
    Baseline,
    /// A candidate generator only: structure there is not by itself suspicious (a clean class
    /// photographed on two backgrounds has it too), so its groups are suspects that only the
    /// verify stage's causal effect can flag.
    Candidate,
}

/// Which `[verify]` switch turns a space's tests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestSwitch {
    /// Always tested (when the stage runs).
    Always,
    /// `[verify] concept_groups`.
    ConceptGroups,
    /// `[verify] colour_groups`.
    ColourGroups,
}

/// How the verify stage tests a group. The pixel-side tests change images: what is taken from
/// the group's images, given to other classes' images (transplant) and removed from the
/// group's own (occlusion), and what the control takes from the class's other images instead.
/// The model-side test changes the model's activations instead. Implemented in
/// `spray_verify::probe`; written in files as its kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceTest {
    /// One region for the whole group: the grid cells where its mean map exceeds the rest of
    /// the class's. Control: the same-shaped region of the class's other images, at the same
    /// pixels and/or moved to where each one's relevance is (`[verify] control`).
    SharedRegion,
    /// Each image's own region: its cells above the class's mean map (a concept group's
    /// images need not share a place). Control: the same number of cells of each of the
    /// class's other images, where its own relevance is.
    MemberRegion,
    /// The group's colours (per-channel mean and spread) given to the other images; the
    /// group's own images take the colours of the class's other images. Control: the colours
    /// of the class's other images. There is no region.
    ColourTransfer,
    /// The group's fine detail — each image minus its low-pass (a blur of σ ≈ 1.4 px at 64
    /// px, scaled with the input) — added to the other images; the group's own images lose
    /// theirs (the low-pass alone). Control: the fine detail of the class's other images.
    /// There is no region: for a pattern spread over the image (scanlines, sensor noise, a
    /// text overlay) the reviewer still sees the evidence in pixels.
    DetailTransfer,
    /// Model-side, for an artifact of any shape (a pattern over the whole image, an overlay):
    /// the direction that separates the group's activations at a concept layer from the rest
    /// of the class's (difference of means, as a concept activation vector) is removed from
    /// the group's activations (ablation, as ClArC) and added to other classes' (injection).
    /// Controls: the direction of a random same-size subset of the class's other images, and
    /// a random direction of the same norm.
    FeatureDirection,
}

impl EvidenceTest {
    /// Every test, in declaration order.
    pub const ALL: [EvidenceTest; 5] = [
        EvidenceTest::SharedRegion,
        EvidenceTest::MemberRegion,
        EvidenceTest::ColourTransfer,
        EvidenceTest::DetailTransfer,
        EvidenceTest::FeatureDirection,
    ];

    /// The test's name in files (`shared-region`, …).
    pub fn name(self) -> &'static str {
        match self {
            EvidenceTest::SharedRegion => "shared-region",
            EvidenceTest::MemberRegion => "member-region",
            EvidenceTest::ColourTransfer => "colour-transfer",
            EvidenceTest::DetailTransfer => "detail-transfer",
            EvidenceTest::FeatureDirection => "feature-direction",
        }
    }

    /// Whether what the test gives always holds the class's own object as well (an image's
    /// fine detail holds its edges), so that its rows count only where the group needs it
    /// (`verify::Evidence::counts`).
    pub fn needs_loss(self) -> bool {
        self == EvidenceTest::DetailTransfer
    }

    /// Whether the test changes the model's activations rather than the images (it has no
    /// pictures and needs a concept layer).
    pub fn is_model_side(self) -> bool {
        self == EvidenceTest::FeatureDirection
    }
}

impl std::fmt::Display for EvidenceTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the table: everything a stage needs to know about a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceSpec {
    /// The `space` column's value (`concept` is followed by `-<i>`).
    pub name: &'static str,
    /// Whether the space exists once per concept layer (`concept-<i>`).
    pub indexed: bool,
    pub source: FeatureSource,
    pub layout: Layout2d,
    pub role: SpaceRole,
    /// How the verify stage tests the space's groups: its pixel-side tests first (the first
    /// one is the space's own: what sets its groups' regions), then the model-side one;
    /// empty: never tested.
    pub tests: &'static [EvidenceTest],
    pub switch: TestSwitch,
    /// Whether groups below `[verify] concept_min_share` of the class are left untested. Why:
    /// a test that averages over each image's own donor (member regions, colours) is noisy
    /// with few donors (a clean class's 9 % group reached a flip rate of 0.36).
    pub min_share: bool,
    /// The space's part of an example picture's file name (`c<i>` for concept layer i).
    pub file_tag: &'static str,
    /// What a group of the space is, for a reader, after its label on the page; `{layer}` is
    /// replaced by the concept layer's node name. Empty for the relevance maps.
    pub note: &'static str,
}

/// THE table: one row per kind of space, in `FeatureSpace` order.
pub static SPACES: [SpaceSpec; 4] = [
    SpaceSpec {
        name: "relevance",
        indexed: false,
        source: FeatureSource::RelevanceGrid,
        layout: Layout2d::Tsne,
        role: SpaceRole::Explanation,
        tests: &[
            EvidenceTest::SharedRegion,
            EvidenceTest::DetailTransfer,
            EvidenceTest::FeatureDirection,
        ],
        switch: TestSwitch::Always,
        min_share: false,
        file_tag: "",
        note: "",
    },
    SpaceSpec {
        name: "image",
        indexed: false,
        source: FeatureSource::ImageGrid,
        layout: Layout2d::Tsne,
        role: SpaceRole::Baseline,
        tests: &[],
        switch: TestSwitch::Always,
        min_share: false,
        file_tag: "img",
        note: " (images that look alike when downsized)",
    },
    SpaceSpec {
        name: "concept",
        indexed: true,
        source: FeatureSource::ConceptChannels,
        layout: Layout2d::SpectralStart,
        role: SpaceRole::Explanation,
        tests: &[
            EvidenceTest::MemberRegion,
            EvidenceTest::DetailTransfer,
            EvidenceTest::FeatureDirection,
        ],
        switch: TestSwitch::ConceptGroups,
        min_share: true,
        file_tag: "c",
        note: " (images whose relevance flows through the same channels of layer {layer}; each \
               image's own region)",
    },
    SpaceSpec {
        name: "colour",
        indexed: false,
        source: FeatureSource::ColourStatistics,
        layout: Layout2d::SpectralStart,
        role: SpaceRole::Candidate,
        tests: &[EvidenceTest::ColourTransfer, EvidenceTest::FeatureDirection],
        switch: TestSwitch::ColourGroups,
        min_share: true,
        file_tag: "col",
        note: " (images whose global colour — per-channel mean and spread — sets them apart; \
               its colours are given to the other images, there is no region)",
    },
];

impl FeatureSpace {
    /// This space's row of [`SPACES`].
    pub fn spec(self) -> &'static SpaceSpec {
        &SPACES[match self {
            FeatureSpace::Relevance => 0,
            FeatureSpace::Image => 1,
            FeatureSpace::Concept(_) => 2,
            FeatureSpace::Colour => 3,
        }]
    }

    /// The concept layer's index, for an indexed space.
    pub fn layer(self) -> Option<u8> {
        match self {
            FeatureSpace::Concept(i) => Some(i),
            _ => None,
        }
    }

    /// Spaces whose clusters are groups of explanations, as opposed to the image-derived
    /// spaces (the image baseline, colour statistics).
    pub fn is_explanation(self) -> bool {
        self.spec().role == SpaceRole::Explanation
    }

    /// Spaces whose groups are suspects: tested by the verify stage and scored by `spray
    /// evaluate` (every space but the image baseline, whose structure is what the
    /// explanations are compared against).
    pub fn is_suspect(self) -> bool {
        self.spec().role != SpaceRole::Baseline
    }

    /// The space's part of a file name: `""`, `c0`, `col`.
    pub fn file_tag(self) -> String {
        match self.layer() {
            Some(i) if self.spec().indexed => format!("{}{i}", self.spec().file_tag),
            _ => self.spec().file_tag.to_string(),
        }
    }

    /// What a group of this space is, for a reader (see [`SpaceSpec::note`]); `layer_name`
    /// gives a concept layer's node name when it is known.
    pub fn note(self, layer_name: impl Fn(u8) -> Option<String>) -> String {
        let note = self.spec().note;
        match self.layer() {
            Some(i) => note.replace(
                "{layer}",
                &layer_name(i).unwrap_or_else(|| self.to_string()),
            ),
            None => note.to_string(),
        }
    }
}

impl std::fmt::Display for FeatureSpace {
    /// The value of the `space` column: `relevance`, `image`, `concept-<i>`, `colour`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let spec = self.spec();
        match self.layer() {
            Some(i) if spec.indexed => write!(f, "{}-{i}", spec.name),
            _ => f.write_str(spec.name),
        }
    }
}

impl serde::Serialize for FeatureSpace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for FeatureSpace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A `space` value that names no space of [`SPACES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature space '{0}' (relevance, image, concept-<i>, colour)")]
pub struct UnknownSpace(pub String);

impl std::str::FromStr for FeatureSpace {
    type Err = UnknownSpace;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownSpace> {
        let unknown = || UnknownSpace(s.to_string());
        let (name, index) = match s.split_once('-') {
            Some((name, i)) => (name, Some(i.parse::<u8>().map_err(|_| unknown())?)),
            None => (s, None),
        };
        let space = match name {
            "relevance" => FeatureSpace::Relevance,
            "image" => FeatureSpace::Image,
            "concept" => FeatureSpace::Concept(index.unwrap_or(0)),
            "colour" => FeatureSpace::Colour,
            _ => return Err(unknown()),
        };
        // An index exactly when the space is indexed: `concept` alone or `colour-1` are not
        // spaces.
        if space.spec().indexed != index.is_some() {
            return Err(unknown());
        }
        Ok(space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One representative of every row of the table.
    fn every_space() -> [FeatureSpace; 4] {
        [
            FeatureSpace::Relevance,
            FeatureSpace::Image,
            FeatureSpace::Concept(3),
            FeatureSpace::Colour,
        ]
    }

    #[test]
    fn the_table_is_consistent_row_by_row() {
        let mut names = std::collections::BTreeSet::new();
        let mut tags = std::collections::BTreeSet::new();
        for (row, space) in SPACES.iter().zip(every_space()) {
            assert!(std::ptr::eq(space.spec(), row), "{space}: row out of order");
            assert!(names.insert(row.name), "{}: name twice", row.name);
            assert!(tags.insert(row.file_tag), "{}: file tag twice", row.name);
            // Name ⇄ value round trip, through text and serde.
            let text = space.to_string();
            assert_eq!(text.parse::<FeatureSpace>(), Ok(space));
            let json = serde_json::to_string(&space).unwrap();
            assert_eq!(serde_json::from_str::<FeatureSpace>(&json).unwrap(), space);
            // A suspect is exactly a space with a test; the baseline has none.
            assert_eq!(space.is_suspect(), !row.tests.is_empty(), "{text}");
            assert_eq!(
                row.role == SpaceRole::Baseline,
                row.tests.is_empty(),
                "{text}"
            );
            // Pixel-side tests first, each once; the model-side test last, for every suspect.
            let pixel = row.tests.iter().filter(|t| !t.is_model_side()).count();
            assert!(
                row.tests[..pixel].iter().all(|t| !t.is_model_side()),
                "{text}"
            );
            let distinct: std::collections::BTreeSet<&str> =
                row.tests.iter().map(|t| t.name()).collect();
            assert_eq!(distinct.len(), row.tests.len(), "{text}");
            assert_eq!(
                row.tests.contains(&EvidenceTest::FeatureDirection),
                space.is_suspect(),
                "{text}"
            );
            // Only a tested space has a switch other than always.
            if row.tests.is_empty() {
                assert_eq!(row.switch, TestSwitch::Always, "{text}");
            }
            // Explanations come from LRP; the image-derived spaces do not.
            let from_lrp = matches!(
                row.source,
                FeatureSource::RelevanceGrid | FeatureSource::ConceptChannels
            );
            assert_eq!(space.is_explanation(), from_lrp, "{text}");
            // The placeholder only where there is a layer to put in.
            assert_eq!(row.note.contains("{layer}"), row.indexed, "{text}");
            // The report draws the relevance space's scatter: it has t-SNE.
            if space == FeatureSpace::Relevance {
                assert_eq!(row.layout, Layout2d::Tsne);
                assert!(row.note.is_empty() && row.file_tag.is_empty());
            }
        }
    }

    #[test]
    fn every_test_is_named_once_and_round_trips() {
        let mut names = std::collections::BTreeSet::new();
        for test in EvidenceTest::ALL {
            assert!(names.insert(test.name()), "{test}: name twice");
            let json = serde_json::to_string(&test).unwrap();
            assert_eq!(json, format!("\"{}\"", test.name()));
            assert_eq!(serde_json::from_str::<EvidenceTest>(&json).unwrap(), test);
            // Every test is used by some space.
            assert!(SPACES.iter().any(|row| row.tests.contains(&test)), "{test}");
        }
    }

    #[test]
    fn names_tags_and_notes_read_as_before() {
        let names: Vec<String> = every_space().iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["relevance", "image", "concept-3", "colour"]);
        let tags: Vec<String> = every_space().iter().map(|s| s.file_tag()).collect();
        assert_eq!(tags, ["", "img", "c3", "col"]);
        let note = FeatureSpace::Concept(0).note(|_| Some("/3/Conv".into()));
        assert!(note.contains("same channels of layer /3/Conv;"), "{note}");
        let unnamed = FeatureSpace::Concept(1).note(|_| None);
        assert!(unnamed.contains("layer concept-1;"), "{unnamed}");
    }

    #[test]
    fn unknown_and_malformed_names_are_refused() {
        for bad in [
            "",
            "relevance-1",
            "concept",
            "concept-x",
            "colour-0",
            "hog",
            "concept-300",
        ] {
            let err = bad.parse::<FeatureSpace>().unwrap_err();
            assert_eq!(err, UnknownSpace(bad.into()), "{bad}");
            assert!(err.to_string().contains("concept-<i>"));
        }
    }
}
