//! Whole-file checks before decoding. Decoders are lenient by design: a JPEG cut off inside
//! its scan data decodes "successfully", the missing rows filled with grey, and would be
//! analysed as if whole. Walking the file's structure first turns such a file into an error
//! with a reason, while valid files with oddities (fill bytes, restart markers, progressive
//! scans, bytes after the end marker) still pass.

/// Walk a JPEG's marker segments and entropy-coded scans up to the end-of-image marker.
pub fn check_jpeg(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    let mut pos = 2;
    loop {
        // Expect a marker: 0xFF, any number of 0xFF fill bytes, then the marker code.
        if pos >= bytes.len() {
            return Err("truncated JPEG: the file ends before the end-of-image marker".into());
        }
        if bytes[pos] != 0xFF {
            return Err(format!(
                "corrupt JPEG: expected a marker at byte {pos}, found 0x{:02X}",
                bytes[pos]
            ));
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err("truncated JPEG: the file ends before the end-of-image marker".into());
        };
        pos += 1;
        match marker {
            0xD9 => return Ok(()), // EOI; anything after it is ignored, as decoders do
            0xD0..=0xD7 | 0x01 => continue, // standalone markers
            0x00 => return Err(format!("corrupt JPEG: stray 0xFF00 at byte {}", pos - 2)),
            _ => {}
        }
        let Some(len) = bytes
            .get(pos..pos + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return Err(format!(
                "truncated JPEG: the file ends inside the header of a 0xFF{marker:02X} segment"
            ));
        };
        if len < 2 || pos + len > bytes.len() {
            return Err(format!(
                "truncated JPEG: the 0xFF{marker:02X} segment at byte {} runs past the end of the file",
                pos - 2
            ));
        }
        pos += len;
        if marker == 0xDA {
            pos = skip_scan(bytes, pos)?;
        }
    }
}

/// Skip entropy-coded data after a start-of-scan header: up to the next marker that is not a
/// stuffed 0xFF00 or a restart marker. Returns the position of that marker's 0xFF.
fn skip_scan(bytes: &[u8], mut pos: usize) -> Result<usize, String> {
    while pos < bytes.len() {
        if bytes[pos] != 0xFF {
            pos += 1;
            continue;
        }
        let mut next = pos + 1;
        while next < bytes.len() && bytes[next] == 0xFF {
            next += 1;
        }
        match bytes.get(next) {
            None => break,
            Some(0x00) | Some(0xD0..=0xD7) => pos = next + 1,
            Some(_) => return Ok(next - 1),
        }
    }
    Err("truncated JPEG: the data ends inside the scan (premature end of data, no end-of-image marker)".into())
}

/// Walk a PNG's chunks up to IEND: a file cut off anywhere, including inside the image data
/// or just before IEND, is reported as such.
pub fn check_png(bytes: &[u8]) -> Result<(), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err("not a PNG (bad signature)".into());
    }
    let mut pos = SIGNATURE.len();
    loop {
        let Some(header) = bytes.get(pos..pos + 8) else {
            return Err("truncated PNG: the file ends before the IEND chunk".into());
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
        let end = pos
            .checked_add(12)
            .and_then(|p| p.checked_add(len))
            .filter(|&e| e <= bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated PNG: the {kind} chunk at byte {pos} runs past the end of the file"
            ));
        };
        if kind == "IEND" {
            return Ok(());
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn whole_files_pass_and_every_cut_fails() {
        let j = jpeg(40, 30);
        check_jpeg(&j).unwrap();
        // Bytes after the end marker are ignored, as by every decoder.
        let mut trailing = j.clone();
        trailing.extend_from_slice(b"\0\0garbage");
        check_jpeg(&trailing).unwrap();
        for cut in 2..j.len() {
            assert!(
                check_jpeg(&j[..cut]).is_err(),
                "cut at {cut} of {}",
                j.len()
            );
        }
        let p = png(20, 10);
        check_png(&p).unwrap();
        for cut in 8..p.len() {
            assert!(check_png(&p[..cut]).is_err(), "cut at {cut} of {}", p.len());
        }
    }

    #[test]
    fn a_cut_inside_the_scan_is_named() {
        let j = jpeg(64, 64);
        let e = check_jpeg(&j[..j.len() * 2 / 3]).unwrap_err();
        assert!(e.contains("inside the scan"), "{e}");
        let e = check_jpeg(&j[..10]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn restart_markers_and_fill_bytes_are_part_of_valid_files() {
        // SOI, a scan whose data holds a stuffed byte, a restart marker and fill bytes, EOI.
        let mut f = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02];
        f.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF, 0xD9]);
        check_jpeg(&f).unwrap();
    }
}
