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
    /// How each file was compressed: its JPEG block statistics (`spray_dataset::block_stats`)
    /// and the quality it was last saved at (`spray_dataset::jpeg_quality`). A source that
    /// compresses harder leaves 8 × 8 blocks and less fine texture over the whole image, which
    /// no heatmap holds in one place and which vary less with the content than any fine-energy
    /// measure; its groups are suspects that the verify stage tests by giving other images
    /// their fine amplitude spectrum.
    Compression,
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
    /// The decoded file's luma step ratios on JPEG's 8-pixel grid, and its last quality.
    CompressionStatistics,
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
    /// `[verify] compression_groups`.
    CompressionGroups,
}

/// Declares [`EvidenceTest`]: per test one line — its variant, its name in files, and whether
/// its rows count only where the group needs what the test gives
/// ([`EvidenceTest::needs_loss`]).
macro_rules! evidence_tests {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal, needs_loss: $loss:literal;)*) => {
        /// How the verify stage tests a group: the value of the `test` column. Everything else
        /// about a test — where it runs, how it changes images or activations, how the report
        /// tells it — is its file in `spray_verify::probe`.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum EvidenceTest {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EvidenceTest {
            /// Every test, in declaration order (the order a space's tests run in).
            pub const ALL: &'static [EvidenceTest] = &[$(EvidenceTest::$variant),*];

            /// The test's name in files (`shared-region`, …).
            pub fn name(self) -> &'static str {
                match self {
                    $(EvidenceTest::$variant => $name,)*
                }
            }

            /// Whether what the test gives always holds the class's own object as well (an
            /// image's fine detail holds its edges), so that its rows count only where the
            /// group needs it (`verify::Evidence::counts`): part of how stored rows are read.
            pub fn needs_loss(self) -> bool {
                match self {
                    $(EvidenceTest::$variant => $loss,)*
                }
            }
        }
    };
}

evidence_tests! {
    /// One region for the whole group (`probe/shared_region.rs`).
    SharedRegion = "shared-region", needs_loss: false;
    /// Each image's own region (`probe/member_region.rs`).
    MemberRegion = "member-region", needs_loss: false;
    /// The group's colours (`probe/colour_transfer.rs`).
    ColourTransfer = "colour-transfer", needs_loss: false;
    /// The group's fine detail (`probe/detail_transfer.rs`).
    DetailTransfer = "detail-transfer", needs_loss: true;
    /// The group's fine amplitude spectrum (`probe/spectrum_transfer.rs`).
    SpectrumTransfer = "spectrum-transfer", needs_loss: false;
    /// The group's mean shading beyond the rest's (`probe/shading_transfer.rs`).
    ShadingTransfer = "shading-transfer", needs_loss: false;
    /// The group's fine-detail strength, the recipient's own detail scaled
    /// (`probe/sharpness_transfer.rs`).
    SharpnessTransfer = "sharpness-transfer", needs_loss: false;
    /// The group's mean excess power at fine frequencies, as a texture under random phases
    /// (`probe/pattern_transfer.rs`).
    PatternTransfer = "pattern-transfer", needs_loss: false;
    /// The group's pooled distribution of values per channel, by histogram matching
    /// (`probe/tone_transfer.rs`).
    ToneTransfer = "tone-transfer", needs_loss: false;
    /// Each group image's fine detail as a texture under random phases
    /// (`probe/texture_transfer.rs`).
    TextureTransfer = "texture-transfer", needs_loss: false;
    /// Each group image's coarse layer (its light and colours as they fall over the image)
    /// in place of the recipient's (`probe/coarse_transfer.rs`).
    CoarseTransfer = "coarse-transfer", needs_loss: false;
    /// Model-side: the group's direction at a concept layer (`probe/feature_direction.rs`).
    FeatureDirection = "feature-direction", needs_loss: false;
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
    /// The space's own evidence test, the first its groups get (what sets their regions);
    /// the other tests that run on it say so themselves (`spray_verify::probe::tests_of`).
    /// None: the space's groups are never tested.
    pub own_test: Option<EvidenceTest>,
    pub switch: TestSwitch,
    /// Whether groups below `[verify] concept_min_share` of the class are left untested. Why:
    /// a test that averages over each image's own donor (member regions, colours) is noisy
    /// with few donors (a clean class's 9 % group reached a flip rate of 0.36).
    pub min_share: bool,
    /// Whether the space's groups share the verify stage's `[verify] max_groups` budget of a
    /// class. False where the space's own test takes at most a few groups a class by itself
    /// (the spectrum transfer: two), so that its groups, tested after the budget's, take no
    /// place other spaces' groups need (on files saved at mixed JPEG qualities the compression
    /// space's groups took three classes' concept groups' places, benches/RESULTS.md).
    pub in_budget: bool,
    /// The space's part of an example picture's file name (`c<i>` for concept layer i).
    pub file_tag: &'static str,
    /// What a group of the space is, for a reader, after its label on the page; `{layer}` is
    /// replaced by the concept layer's node name. Empty for the relevance maps.
    pub note: &'static str,
}

/// THE table: one row per kind of space, in `FeatureSpace` order.
pub static SPACES: [SpaceSpec; 5] = [
    SpaceSpec {
        name: "relevance",
        indexed: false,
        source: FeatureSource::RelevanceGrid,
        layout: Layout2d::Tsne,
        role: SpaceRole::Explanation,
        own_test: Some(EvidenceTest::SharedRegion),
        switch: TestSwitch::Always,
        min_share: false,
        in_budget: true,
        file_tag: "",
        note: "",
    },
    SpaceSpec {
        name: "image",
        indexed: false,
        source: FeatureSource::ImageGrid,
        layout: Layout2d::Tsne,
        role: SpaceRole::Baseline,
        own_test: None,
        switch: TestSwitch::Always,
        min_share: false,
        in_budget: true,
        file_tag: "img",
        note: " (images that look alike when downsized)",
    },
    SpaceSpec {
        name: "concept",
        indexed: true,
        source: FeatureSource::ConceptChannels,
        layout: Layout2d::SpectralStart,
        role: SpaceRole::Explanation,
        own_test: Some(EvidenceTest::MemberRegion),
        switch: TestSwitch::ConceptGroups,
        min_share: true,
        in_budget: true,
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
        own_test: Some(EvidenceTest::ColourTransfer),
        switch: TestSwitch::ColourGroups,
        min_share: true,
        in_budget: true,
        file_tag: "col",
        note: " (images whose global colour — per-channel mean and spread — sets them apart; \
               its colours are given to the other images, there is no region)",
    },
    SpaceSpec {
        name: "compression",
        indexed: false,
        source: FeatureSource::CompressionStatistics,
        layout: Layout2d::SpectralStart,
        role: SpaceRole::Candidate,
        own_test: Some(EvidenceTest::SpectrumTransfer),
        switch: TestSwitch::CompressionGroups,
        min_share: true,
        in_budget: false,
        file_tag: "jpg",
        note: " (images whose files were compressed harder than the rest's — blockier on \
               JPEG's 8-pixel grid, or saved last at a lower quality; their fine amplitude \
               spectrum is given to the other images, there is no region)",
    },
];

impl FeatureSpace {
    /// The space of row `row` of [`SPACES`]; `layer` is an indexed space's index (ignored
    /// otherwise). None past the table.
    pub fn from_row(row: usize, layer: u8) -> Option<FeatureSpace> {
        Some(match row {
            0 => FeatureSpace::Relevance,
            1 => FeatureSpace::Image,
            2 => FeatureSpace::Concept(layer),
            3 => FeatureSpace::Colour,
            4 => FeatureSpace::Compression,
            _ => return None,
        })
    }

    /// This space's row of [`SPACES`].
    pub fn spec(self) -> &'static SpaceSpec {
        &SPACES[match self {
            FeatureSpace::Relevance => 0,
            FeatureSpace::Image => 1,
            FeatureSpace::Concept(_) => 2,
            FeatureSpace::Colour => 3,
            FeatureSpace::Compression => 4,
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

    /// The space's part of a file name: `""`, `c0`, `col`, `jpg`.
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
    /// The value of the `space` column: `relevance`, `image`, `concept-<i>`, `colour`,
    /// `compression`.
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
#[error("unknown feature space '{0}' (relevance, image, concept-<i>, colour, compression)")]
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
            "compression" => FeatureSpace::Compression,
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
    fn every_space() -> [FeatureSpace; 5] {
        [
            FeatureSpace::Relevance,
            FeatureSpace::Image,
            FeatureSpace::Concept(3),
            FeatureSpace::Colour,
            FeatureSpace::Compression,
        ]
    }

    #[test]
    fn the_table_is_consistent_row_by_row() {
        let mut names = std::collections::BTreeSet::new();
        let mut tags = std::collections::BTreeSet::new();
        assert_eq!(FeatureSpace::from_row(SPACES.len(), 0), None);
        for (i, (row, space)) in SPACES.iter().zip(every_space()).enumerate() {
            assert!(std::ptr::eq(space.spec(), row), "{space}: row out of order");
            assert_eq!(FeatureSpace::from_row(i, 3), Some(space), "row {i}");
            assert!(names.insert(row.name), "{}: name twice", row.name);
            assert!(tags.insert(row.file_tag), "{}: file tag twice", row.name);
            // Name ⇄ value round trip, through text and serde.
            let text = space.to_string();
            assert_eq!(text.parse::<FeatureSpace>(), Ok(space));
            let json = serde_json::to_string(&space).unwrap();
            assert_eq!(serde_json::from_str::<FeatureSpace>(&json).unwrap(), space);
            // A suspect is exactly a space with its own test; the baseline has none (the
            // tests over spray_verify's probe table check the rest of each space's tests).
            assert_eq!(space.is_suspect(), row.own_test.is_some(), "{text}");
            // A space outside the group budget is tested only by a test that caps itself.
            if !row.in_budget {
                assert_eq!(row.own_test, Some(EvidenceTest::SpectrumTransfer), "{text}");
            }
            // Only a tested space has a switch other than always.
            if row.own_test.is_none() {
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
        for &test in EvidenceTest::ALL {
            assert!(names.insert(test.name()), "{test}: name twice");
            let json = serde_json::to_string(&test).unwrap();
            assert_eq!(json, format!("\"{}\"", test.name()));
            assert_eq!(serde_json::from_str::<EvidenceTest>(&json).unwrap(), test);
        }
    }

    #[test]
    fn names_tags_and_notes_read_as_before() {
        let names: Vec<String> = every_space().iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            ["relevance", "image", "concept-3", "colour", "compression"]
        );
        let tags: Vec<String> = every_space().iter().map(|s| s.file_tag()).collect();
        assert_eq!(tags, ["", "img", "c3", "col", "jpg"]);
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
            "compression-1",
            "hog",
            "concept-300",
        ] {
            let err = bad.parse::<FeatureSpace>().unwrap_err();
            assert_eq!(err, UnknownSpace(bad.into()), "{bad}");
            assert!(err.to_string().contains("concept-<i>"));
        }
    }
}
