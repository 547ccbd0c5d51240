//! Before/after pictures of one occluded cluster member and one transplant recipient, for the
//! report: one strip per tested group and test, `<out>/verify/examples/<class>-<tested
//! group>-<test>.png`, its four panels in [`KINDS`] order.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use spray_dataset::{ChannelOrder, PixelScale, Preprocess};
use spray_store::{AnalysisGroup, EvidenceTest, GroupId};

use crate::evidence::PictureSink;

/// The four pictures of a tested cluster, in the order the report shows them (left to right in
/// the strip).
pub const KINDS: [&str; 4] = ["original", "occluded", "recipient", "transplanted"];

/// Writes a tested group's pictures under `<out>/verify/examples/`
/// ([`spray_store::verify::example_path`]) through a [`PictureQueue`].
pub struct ExampleWriter<'a> {
    /// `<out>/verify`.
    pub dir: &'a Path,
    pub class_index: i32,
    pub preprocess: &'a Preprocess,
    /// Input height and width.
    pub size: [usize; 2],
    pub queue: &'a PictureQueue,
}

/// What the picture thread is asked: a picture to write, or to say once everything sent
/// before is on disk (with the first error since the last such answer).
enum PictureJob {
    Write(PathBuf, image::RgbImage),
    Flush(mpsc::Sender<crate::Result<()>>),
}

/// Pictures encoded and written on a thread of their own. Why: each is written atomically
/// and synced (some 200 strips a run on the realistic scenarios, 800 files before they were
/// strips), and the stage's thread waited on the disk for a twelfth of its time while the
/// model could have been scoring.
/// A class's unit is written only after [`PictureQueue::flush`]: a unit on disk still means
/// every picture it lists is there.
pub struct PictureQueue {
    jobs: mpsc::Sender<PictureJob>,
}

impl PictureQueue {
    /// The queue and its thread, within `scope`; the thread ends when the queue is dropped.
    pub fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> (PictureQueue, std::thread::ScopedJoinHandle<'scope, ()>) {
        let (jobs, inbox) = mpsc::channel::<PictureJob>();
        let worker = scope.spawn(move || {
            let mut failed = None;
            for job in inbox {
                match job {
                    PictureJob::Write(path, img) => {
                        if failed.is_none() {
                            failed = write_png(&path, &img).err();
                        }
                    }
                    PictureJob::Flush(answer) => {
                        // The asking side may be gone (an error ended the stage).
                        let _ = answer.send(failed.take().map_or(Ok(()), Err));
                    }
                }
            }
        });
        (PictureQueue { jobs }, worker)
    }

    fn send(&self, job: PictureJob) -> crate::Result<()> {
        self.jobs
            .send(job)
            .map_err(|_| crate::VerifyError::Picture {
                path: "(the picture thread)".into(),
                reason: "it has stopped".into(),
            })
    }

    /// Wait until every picture sent so far is written; the first that failed, if any.
    pub fn flush(&self) -> crate::Result<()> {
        let (answer, reply) = mpsc::channel();
        self.send(PictureJob::Flush(answer))?;
        reply.recv().map_err(|_| crate::VerifyError::Picture {
            path: "(the picture thread)".into(),
            reason: "it stopped before writing every picture".into(),
        })?
    }
}

impl PictureSink for ExampleWriter<'_> {
    fn write(
        &self,
        group: GroupId,
        test: EvidenceTest,
        pictures: [&[f32]; 4],
    ) -> crate::Result<Option<String>> {
        let path = spray_store::verify::example_path(
            self.dir,
            AnalysisGroup::from_index(self.class_index),
            group,
            test,
        );
        let [h, w] = self.size;
        self.queue.send(PictureJob::Write(
            path.clone(),
            strip(pictures, self.preprocess, h, w),
        ))?;
        Ok(path
            .strip_prefix(self.dir)
            .ok()
            .map(|rel| rel.display().to_string()))
    }
}

/// The four pictures side by side, each as the model saw it (`to_rgb`): one h × 4w image.
pub fn strip(pictures: [&[f32]; 4], pre: &Preprocess, h: usize, w: usize) -> image::RgbImage {
    let mut out = image::RgbImage::new(4 * w as u32, h as u32);
    for (k, tensor) in pictures.into_iter().enumerate() {
        image::imageops::replace(&mut out, &to_rgb(tensor, pre, h, w), (k * w) as i64, 0);
    }
    out
}

/// A prepared CHW tensor back to the RGB image the model saw (undoing scale, mean/std and
/// channel order).
pub fn to_rgb(tensor: &[f32], pre: &Preprocess, h: usize, w: usize) -> image::RgbImage {
    let plane = h * w;
    let factor = match pre.scale {
        PixelScale::Unit => 255.0,
        PixelScale::Byte => 1.0,
    };
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        let mut px = [0u8; 3];
        for (c, out) in px.iter_mut().enumerate() {
            let source = match pre.channels {
                ChannelOrder::Rgb => c,
                ChannelOrder::Bgr => 2 - c,
            };
            let v = (tensor[source * plane + p] * pre.std[source] + pre.mean[source]) * factor;
            *out = v.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// Encode and write atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> Result<(), crate::VerifyError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| crate::VerifyError::Picture {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    spray_store::write_atomically(path, &bytes)?;
    Ok(())
}

/// A sink that keeps no pictures, for the tests of any evidence test.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    pub struct NoPictures;
    impl PictureSink for NoPictures {
        fn write(
            &self,
            _: GroupId,
            _: EvidenceTest,
            _: [&[f32]; 4],
        ) -> crate::Result<Option<String>> {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_pictures_are_on_disk_when_flush_returns_and_a_failure_is_told() {
        let dir = std::env::temp_dir().join(format!("spray-pictures-{}", std::process::id()));
        let img = image::RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]));
        std::thread::scope(|scope| {
            let (queue, worker) = PictureQueue::spawn(scope);
            let paths: Vec<PathBuf> = (0..5).map(|i| dir.join(format!("{i}.png"))).collect();
            for p in &paths {
                queue
                    .send(PictureJob::Write(p.clone(), img.clone()))
                    .unwrap();
            }
            queue.flush().unwrap();
            for p in &paths {
                assert_eq!(image::open(p).unwrap().to_rgb8(), img);
            }
            // A picture that cannot be written (its folder is a file): the next flush says
            // so, and the one after starts clean.
            let blocked = dir.join("0.png").join("x.png");
            queue.send(PictureJob::Write(blocked, img.clone())).unwrap();
            assert!(queue.flush().is_err());
            queue.flush().unwrap();
            drop(queue);
            worker.join().unwrap();
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_prepared_tensor_turns_back_into_its_pixels() {
        for channels in ["rgb", "bgr"] {
            let pre: Preprocess = serde_json::from_str(&format!(
                r#"{{"input_size": [3, 4], "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225], "channels": "{channels}"}}"#
            ))
            .unwrap();
            let img = image::RgbImage::from_fn(4, 3, |x, y| {
                image::Rgb([(x * 60) as u8, (y * 100) as u8, (x * y * 20 + 7) as u8])
            });
            let prepared = pre.apply(img.clone(), 0);
            assert_eq!(to_rgb(&prepared.tensor, &pre, 3, 4), img, "{channels}");
        }
    }
}
