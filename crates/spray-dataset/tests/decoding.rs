//! Strict decoding: damaged files are errors with a reason, odd but valid files decode.

use std::path::{Path, PathBuf};

use spray_dataset::decode_rgb;

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures/images")
}

/// A scratch folder; a test removes it at its end, so a failing one leaves it to look at.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spray-decoding-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn encoded(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

fn gradient(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 90])
    })
}

#[test]
fn odd_but_valid_images_decode() {
    // Made by PIL (make_images.py): CMYK, progressive and restart-marker JPEGs, greyscale
    // JPEG, palette PNG, grey + alpha PNG.
    for name in [
        "cmyk.jpg",
        "progressive.jpg",
        "restart.jpg",
        "grey.jpg",
        "palette.png",
        "grey_alpha.png",
    ] {
        let img = decode_rgb(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.dimensions(), (24, 16), "{name}");
        let first = img.get_pixel(0, 0);
        assert!(
            img.pixels().any(|p| p != first),
            "{name} decoded as one colour"
        );
    }
    let dir = scratch("odd");
    let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(9, 7, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 30, 5, (x * 28) as u8])
    }));
    let rgb16 = image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(8, 6, |x, y| {
        image::Rgb([x as u16 * 8000, y as u16 * 9000, 65535])
    }));
    let grey16 = image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(5, 5, |x, _| {
        image::Luma([x as u16 * 16000])
    }));
    let cases = [
        ("rgba.png", encoded(rgba, image::ImageFormat::Png), (9, 7)),
        ("rgb16.png", encoded(rgb16, image::ImageFormat::Png), (8, 6)),
        (
            "grey16.png",
            encoded(grey16, image::ImageFormat::Png),
            (5, 5),
        ),
        (
            "one.png",
            encoded(gradient(1, 1).into(), image::ImageFormat::Png),
            (1, 1),
        ),
        (
            "one.jpg",
            encoded(gradient(1, 1).into(), image::ImageFormat::Jpeg),
            (1, 1),
        ),
        (
            "wide.png",
            encoded(gradient(3000, 2).into(), image::ImageFormat::Png),
            (3000, 2),
        ),
        (
            "tall.jpg",
            encoded(gradient(3, 2000).into(), image::ImageFormat::Jpeg),
            (3, 2000),
        ),
        // Names a shell, a CSV or an HTML page would choke on.
        (
            "it's \"quoted\" <b>&amp;<script> ünï.png",
            encoded(gradient(4, 4).into(), image::ImageFormat::Png),
            (4, 4),
        ),
        (
            "line\nbreak.jpg",
            encoded(gradient(4, 4).into(), image::ImageFormat::Jpeg),
            (4, 4),
        ),
    ];
    for (name, bytes, size) in cases {
        let p = write(&dir, name, &bytes);
        let img = decode_rgb(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.dimensions(), size, "{name}");
    }
    // Bytes after the end-of-image marker (some cameras pad files) are not damage.
    let mut padded = encoded(gradient(16, 16).into(), image::ImageFormat::Jpeg);
    padded.extend_from_slice(&[0u8; 64]);
    decode_rgb(&write(&dir, "padded.jpg", &padded)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_files_are_errors_with_a_reason() {
    let dir = scratch("truncated");
    let mut jpegs: Vec<(String, Vec<u8>)> = ["cmyk.jpg", "progressive.jpg", "restart.jpg"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(fixtures().join(n)).unwrap()))
        .collect();
    jpegs.push((
        "photo.jpg".into(),
        encoded(gradient(64, 48).into(), image::ImageFormat::Jpeg),
    ));
    for (name, bytes) in &jpegs {
        // Cut inside the scan data, at several depths, and just before the end marker.
        for cut in [bytes.len() / 2, bytes.len() * 3 / 4, bytes.len() - 2] {
            let p = write(&dir, &format!("cut{cut}-{name}"), &bytes[..cut]);
            let e = decode_rgb(&p).expect_err(&format!("{name} cut at {cut} decoded"));
            assert!(e.contains("truncated JPEG"), "{name} at {cut}: {e}");
        }
    }
    let png = encoded(gradient(64, 48).into(), image::ImageFormat::Png);
    for cut in [png.len() / 2, png.len() - 6] {
        let p = write(&dir, &format!("cut{cut}.png"), &png[..cut]);
        let e = decode_rgb(&p).expect_err("a cut PNG decoded");
        assert!(e.contains("truncated PNG"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_a_jpeg_file_has_block_statistics_and_a_quality() {
    let dir = scratch("blocks");
    // A textured picture: its blocks come from the compression, not from its content.
    let picture = image::RgbImage::from_fn(64, 48, |x, y| {
        let v = |a: f64| (127.0 + 100.0 * a.sin()) as u8;
        let (x, y) = (f64::from(x), f64::from(y));
        image::Rgb([
            v(x * 0.37 + y * 0.11),
            v(x * 0.23 - y * 0.41),
            v(x * 0.05 + y * 0.3),
        ])
    });
    let mut hard = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut hard, 12)
        .encode_image(&picture)
        .unwrap();
    let png = encoded(
        image::DynamicImage::ImageRgb8(picture),
        image::ImageFormat::Png,
    );
    let pre = spray_dataset::Preprocess {
        input_size: [32, 32],
        resize: None,
        square: spray_dataset::SquareMode::None,
        pad_color: [0, 0, 0],
        crop: None,
        scale: spray_dataset::PixelScale::Unit,
        mean: [0.0; 3],
        std: [1.0; 3],
        channels: spray_dataset::ChannelOrder::Rgb,
        layout: spray_dataset::TensorLayout::Nchw,
        seed: 0,
    };
    let jpeg = pre.load(&write(&dir, "hard.jpg", &hard), 0).unwrap();
    // Measured on the file's own grid, before the resize to 32 × 32 would smear it.
    let blocks = jpeg.blocks.expect("a JPEG file has block statistics");
    assert!(blocks.iter().all(|&b| b > 0.3), "{blocks:?}");
    // The quality it was saved at, from its quantisation table.
    let quality = jpeg.jpeg_quality.expect("a JPEG file has a quality");
    assert!((quality - 12.0).abs() < 1.0, "{quality}");
    let png = pre.load(&write(&dir, "same.png", &png), 0).unwrap();
    assert_eq!((png.blocks, png.jpeg_quality), (None, None));
    // Prepared from memory, an image has no file to measure.
    let from_memory = pre.apply(png.rgb, 0);
    assert_eq!((from_memory.blocks, from_memory.jpeg_quality), (None, None));
    std::fs::remove_dir_all(&dir).unwrap();
}
