//! The quality a JPEG file was last saved at, read from its luma quantisation table: one of
//! the statistics the analysis's compression space groups images by (the other: the blocks,
//! `blocks.rs`).
//!
//! Why: files from one source share its encoder's settings. A class whose files came partly
//! from a source that saves smaller files (a web crawl, a scanner, a hospital's archive) has
//! them at a lower quality than the rest, and the model can learn the lost detail as a
//! shortcut. Where the difference is moderate (quality 50 among files saved at 70–98) the
//! blocks it leaves lie within the spread of the rest's block statistics
//! ([`crate::block_stats`]: 0.28 ± 0.10 against 0.07 ± 0.11 on natural photographs), but the
//! table the file was coded with names it exactly. A file's table says only how it was saved
//! last: an earlier, harder compression saved again at a high quality shows in its blocks, not
//! here.

/// The luma quantisation table of Annex K of the JPEG standard (ITU-T T.81, K.1), the one
/// libjpeg, Pillow, OpenCV and most cameras' encoders scale by their quality setting. Only its
/// sum is used, so its order (natural or zigzag) does not matter.
const STANDARD_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// The quality (1–100, libjpeg's scale) a JPEG file's luma table corresponds to, or `None`
/// where the bytes hold no table before the first scan (not a JPEG, or cut off before it).
///
/// libjpeg scales the standard table by `s = 5000 / q` below quality 50 and `s = 200 − 2q`
/// from it (in percent, each entry clamped to 1–255); the quality is the one whose scaled
/// table has the file's sum of steps. For an encoder with tables of its own this is the libjpeg
/// quality whose steps are as coarse on average: still the order in which its files lost
/// detail. Which table is the luma's is read from the frame header (its first component);
/// table 0 where the header comes after the tables or names none.
pub fn jpeg_quality(bytes: &[u8]) -> Option<f32> {
    let segments = Segments::new(bytes)?;
    let mut tables: [Option<u32>; 4] = [None; 4];
    let mut luma_table = 0usize;
    for (marker, body) in segments {
        match marker {
            // DQT: one or more tables, each a precision/id byte and 64 steps of 8 or 16 bits.
            0xDB => {
                let mut rest = body;
                while let Some((&pq_tq, after)) = rest.split_first() {
                    let (sixteen, id) = (pq_tq >> 4 != 0, usize::from(pq_tq & 0x0F));
                    let width = if sixteen { 128 } else { 64 };
                    let steps = after.get(..width)?;
                    let sum = if sixteen {
                        steps
                            .chunks_exact(2)
                            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
                            .sum()
                    } else {
                        steps.iter().map(|&b| u32::from(b)).sum()
                    };
                    if let Some(slot) = tables.get_mut(id) {
                        *slot = Some(sum);
                    }
                    rest = &after[width..];
                }
            }
            // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): the frame header; its first
            // component is the luma, and byte 8 of the body is that component's table.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if let Some(&t) = body.get(8) {
                    luma_table = usize::from(t & 0x03);
                }
            }
            _ => {}
        }
    }
    let sum = tables[luma_table].or(tables[0])?;
    Some(quality_of(sum))
}

/// The sum of the standard luma table as libjpeg scales it for `quality` (1–100): each step
/// `(standard · s + 50) / 100` in integers, clamped to 1–255 as a baseline file's are.
fn scaled_sum(quality: u32) -> u32 {
    let s = if quality < 50 {
        5000 / quality
    } else {
        200 - 2 * quality
    };
    STANDARD_LUMA
        .iter()
        .map(|&v| ((u32::from(v) * s + 50) / 100).clamp(1, 255))
        .sum()
}

/// The quality whose scaled standard table sums to `sum`, interpolated between the two
/// integer qualities that bracket it. Why not invert the scale in closed form: below quality
/// 25 the largest steps clamp at 255, and the closed form would read a file saved at 10 as
/// about 15.
fn quality_of(sum: u32) -> f32 {
    // The sums fall as the quality rises (not strictly: two qualities can share a table).
    let mut above = (1u32, scaled_sum(1));
    if sum >= above.1 {
        return 1.0;
    }
    for q in 2..=100 {
        let here = scaled_sum(q);
        if sum >= here {
            let span = f64::from(above.1 - here);
            let part = if span > 0.0 {
                f64::from(above.1 - sum) / span
            } else {
                0.0
            };
            return (f64::from(above.0) + part * f64::from(q - above.0)) as f32;
        }
        if here < above.1 {
            above = (q, here);
        }
    }
    100.0
}

/// A JPEG file's marker segments up to its first scan (start of scan, `DA`): `(marker,
/// body)`, the body without its two length bytes. Stops quietly at anything malformed: the
/// file's decoding reports what is wrong with it.
struct Segments<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Segments<'a> {
    /// `None` unless the bytes start with a JPEG's start-of-image marker.
    fn new(bytes: &'a [u8]) -> Option<Self> {
        bytes
            .starts_with(&[0xFF, 0xD8])
            .then_some(Segments { bytes, at: 2 })
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if *self.bytes.get(self.at)? != 0xFF {
                return None;
            }
            // Any number of fill bytes (FF) may precede a marker.
            while self.bytes.get(self.at + 1) == Some(&0xFF) {
                self.at += 1;
            }
            let marker = *self.bytes.get(self.at + 1)?;
            self.at += 2;
            match marker {
                // Markers without a body: TEM and the restart markers.
                0x01 | 0xD0..=0xD7 => continue,
                0xDA | 0xD9 => return None,
                _ => {}
            }
            let length = self.bytes.get(self.at..self.at + 2)?;
            let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
            let body = self.bytes.get(self.at + 2..self.at + length.max(2))?;
            self.at += length.max(2);
            return Some((marker, body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved_at(quality: u8) -> Vec<u8> {
        let picture = image::RgbImage::from_fn(40, 24, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 10) as u8, ((x + y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode_image(&picture)
            .unwrap();
        bytes
    }

    #[test]
    fn the_quality_a_file_was_saved_at_is_read_back() {
        // Rounding each step to an integer moves the estimate by well under a quality point
        // between 10 and 95; at 100 every step is 1.
        for q in [10u8, 25, 50, 70, 85, 95, 100] {
            let read = jpeg_quality(&saved_at(q)).unwrap();
            assert!(
                (read - f32::from(q)).abs() < 1.0,
                "saved at {q}, read {read}"
            );
        }
    }

    #[test]
    fn a_file_without_a_table_gives_none() {
        assert_eq!(jpeg_quality(b""), None);
        assert_eq!(jpeg_quality(b"\x89PNG\r\n\x1a\n"), None);
        let whole = saved_at(50);
        // Cut inside the first segment: no table was read.
        assert_eq!(jpeg_quality(&whole[..8]), None);
        // Scrambled lengths stop the walk without a panic.
        let mut bad = whole.clone();
        bad[4] = 0xFF;
        bad[5] = 0xFF;
        let _ = jpeg_quality(&bad);
    }

    /// A hand-made file: a 16-bit table 1 at the standard's steps (libjpeg's quality 50) named
    /// by the frame header as the luma's, beside an 8-bit table 0 of ones.
    #[test]
    fn the_luma_table_is_the_one_the_frame_header_names() {
        let mut bytes = vec![0xFF, 0xD8];
        let mut dqt = vec![0x00];
        dqt.extend([1u8; 64]);
        dqt.push(0x11);
        for v in STANDARD_LUMA {
            dqt.extend(v.to_be_bytes());
        }
        bytes.extend([0xFF, 0xDB]);
        bytes.extend(((dqt.len() + 2) as u16).to_be_bytes());
        bytes.extend(dqt);
        // SOF0: precision 8, 8 × 8, one component (id 1, sampling 11, table 1).
        bytes.extend([0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 1]);
        bytes.extend([0xFF, 0xDA]);
        assert_eq!(jpeg_quality(&bytes), Some(50.0));
    }
}
