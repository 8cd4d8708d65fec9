//! Rendering with ffmpeg: a title card for text to video, a zoom over the
//! source image for image to video, and a thumbnail of either.

use crate::Input;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;
use videojobs_core::model::notification::{Destination, WebhookPolicy};
use videojobs_core::ports::HostResolver;
use videojobs_core::services::webhook_rules::check_destination;

const FONT_CANDIDATES: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"];
const MAX_SIDE: u32 = 3840;

/// Refuses input the renderer cannot honour, before the job is accepted.
pub fn check_input(input: &Input) -> Result<(), String> {
    let seconds = input.duration_seconds.unwrap_or(5.0);
    if !(0.1..=60.0).contains(&seconds) {
        return Err("duration_seconds must be between 0.1 and 60".into());
    }
    let fps = input.frame_rate.unwrap_or(24);
    if !(1..=60).contains(&fps) {
        return Err("frame_rate must be between 1 and 60".into());
    }
    for side in [input.width, input.height].into_iter().flatten() {
        if !(16..=MAX_SIDE).contains(&side) || side % 2 != 0 {
            return Err("width and height must be even, from 16 to 3840".into());
        }
    }
    match input.mode.as_str() {
        "text" if input.prompt.as_deref().is_some_and(|p| !p.trim().is_empty()) => Ok(()),
        "text" => Err("a prompt is required".into()),
        "image" if input.image_url.is_some() => Ok(()),
        "image" => Err("an image_url is required".into()),
        _ => Err("mode must be text or image".into()),
    }
}

fn font() -> Option<&'static str> {
    FONT_CANDIDATES.iter().copied().find(|p| Path::new(p).exists())
}

/// Wraps the prompt into lines for the title card.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        if lines.len() == 8 {
            break;
        }
    }
    if !line.is_empty() && lines.len() < 8 {
        lines.push(line);
    }
    lines.join("\n")
}

async fn run(command: &mut Command) -> Result<(), String> {
    let output = command.kill_on_drop(true).output().await.map_err(|e| format!("ffmpeg could not start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("ffmpeg failed: {}", stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")))
    }
}

fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-y"]);
    command
}

/// Backgrounds a seed picks from; without one, the first.
const BACKGROUNDS: [&str; 6] = ["1d3557", "264653", "3d405b", "5f0f40", "2b2d42", "14213d"];

/// The text video's background for `seed`: a seed makes the same video again.
fn background(seed: Option<u32>) -> &'static str {
    BACKGROUNDS[seed.map_or(0, |s| s as usize % BACKGROUNDS.len())]
}

/// Renders `video.mp4` and `thumbnail.jpg` into `dir`; a source image is
/// fetched only from an address `image_policy` allows.
pub async fn render(image_policy: WebhookPolicy, dir: &Path, input: &Input) -> Result<(), String> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
    let video = dir.join("video.mp4");
    let partial = dir.join("partial.mp4");
    let seconds = input.duration_seconds.unwrap_or(5.0);
    let fps = input.frame_rate.unwrap_or(24);
    let (width, height) = (input.width.unwrap_or(1280), input.height.unwrap_or(720));
    let mut command = ffmpeg();
    match input.mode.as_str() {
        "image" => {
            let image = fetch_image(image_policy, dir, input.image_url.as_deref().unwrap_or_default()).await?;
            let frames = ((seconds * f64::from(fps)).round() as u64).max(1);
            // zoompan's zoom grows by zoom_speed each second, centred.
            let per_frame = input.zoom_speed.unwrap_or(0.1) / f64::from(fps);
            let filter = format!(
                "scale={w2}:{h2}:force_original_aspect_ratio=increase,crop={w2}:{h2},\
                 zoompan=z='min(1+{per_frame}*on,4)':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={width}x{height}:fps={fps}",
                w2 = width * 2,
                h2 = height * 2,
            );
            // The demuxer is named from the image's magic bytes, and only local files may be
            // opened: no other ffmpeg demuxer or protocol ever sees the fetched bytes.
            let demuxer = image_demuxer(&image).await?;
            command.args(["-f", demuxer, "-protocol_whitelist", "file", "-i"]).arg(&image);
            command.args(["-vf", &filter, "-frames:v", &frames.to_string()]);
        }
        _ => {
            let text_file = dir.join("prompt.txt");
            let prompt = input.prompt.as_deref().unwrap_or("");
            tokio::fs::write(&text_file, wrap(prompt, (width / 28).max(12) as usize)).await.map_err(|e| e.to_string())?;
            let source = format!("color=c=0x{}:s={width}x{height}:d={seconds}:r={fps}", background(input.seed));
            let mut filter = String::from("format=yuv420p");
            if let Some(font) = font() {
                filter = format!(
                    "drawtext=fontfile={font}:textfile={}:fontcolor=white:fontsize={}:line_spacing=12:\
                     x=(w-text_w)/2:y=(h-text_h)/2,fade=t=in:st=0:d=0.5,format=yuv420p",
                    text_file.display(),
                    (height / 16).max(12)
                );
            }
            command.args(["-f", "lavfi", "-i", &source, "-vf", &filter, "-t", &seconds.to_string()]);
        }
    }
    command.args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]);
    command.arg(&partial);
    run(&mut command).await?;
    run(ffmpeg()
        .args(["-ss", "0", "-f", "mov", "-protocol_whitelist", "file", "-i"])
        .arg(&partial)
        .args(["-frames:v", "1", "-vf", "scale=320:-2"])
        .arg(dir.join("thumbnail.jpg")))
    .await?;
    // Served with each file, so the copier can check what it received.
    for (file, sum) in [(&partial, dir.join("video.sha256")), (&dir.join("thumbnail.jpg"), dir.join("thumbnail.sha256"))] {
        let bytes = tokio::fs::read(file).await.map_err(|e| e.to_string())?;
        let digest = videojobs_core::model::request::sha256_hex(&bytes);
        tokio::fs::write(sum, digest).await.map_err(|e| e.to_string())?;
    }
    // Renamed only when whole, so a file that is served is always complete.
    tokio::fs::rename(&partial, &video).await.map_err(|e| e.to_string())
}

/// ffmpeg's demuxer for the image at `path`, from its first bytes; anything
/// but a PNG, JPEG or WebP is refused.
async fn image_demuxer(path: &Path) -> Result<&'static str, String> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 16];
    let mut file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let read = file.read(&mut head).await.map_err(|e| e.to_string())?;
    demuxer_for(&head[..read]).ok_or_else(|| "image not usable: not a PNG, JPEG or WebP".to_owned())
}

fn demuxer_for(head: &[u8]) -> Option<&'static str> {
    use videojobs_core::model::request::ImageType;
    Some(match videojobs_core::model::image::kind_of(head)? {
        ImageType::Png => "png_pipe",
        ImageType::Jpeg => "jpeg_pipe",
        ImageType::Webp => "webp_pipe",
    })
}

/// The largest source image fetched (twice the API's upload cap).
pub const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;
const IMAGE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IMAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// DNS through the system resolver, for the image URL check.
struct SystemDns;

#[async_trait::async_trait]
impl HostResolver for SystemDns {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<std::net::IpAddr>, String> {
        match tokio::time::timeout(IMAGE_CONNECT_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }
}

/// Fetches the source image the way client notifications are posted: every
/// address the host resolves to must be allowed, the connection goes to the
/// checked address only (no second lookup), redirects are not followed, and
/// at most [`MAX_IMAGE_BYTES`] are read.
async fn fetch_image(policy: WebhookPolicy, dir: &Path, url: &str) -> Result<PathBuf, String> {
    let parsed = url::Url::parse(url).map_err(|_| "image not fetched: the image_url is not a URL".to_owned())?;
    let destination = check_destination(&parsed, policy, &SystemDns).await.map_err(|e| format!("image not fetched: the image_url {e}"))?;
    let bytes = download(&destination).await.map_err(|e| format!("image not fetched: {}", videojobs_core::model::redact::text(&e)))?;
    let path = dir.join("source-image");
    tokio::fs::write(&path, &bytes).await.map_err(|e| e.to_string())?;
    Ok(path)
}

async fn download(destination: &Destination) -> Result<Vec<u8>, String> {
    let builder = videojobs_providers::pinned_to(destination).connect_timeout(IMAGE_CONNECT_TIMEOUT).timeout(IMAGE_TIMEOUT);
    let client = builder.build().map_err(|e| e.to_string())?;
    let mut response = client.get(destination.url.clone()).send().await.map_err(|e| e.to_string())?;
    if response.status().is_redirection() {
        return Err(format!("HTTP {} (redirects are not followed)", response.status()));
    }
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    if response.content_length().is_some_and(|length| length > MAX_IMAGE_BYTES) {
        return Err(format!("the image is over {MAX_IMAGE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if (bytes.len() + chunk.len()) as u64 > MAX_IMAGE_BYTES {
            return Err(format!("the image is over {MAX_IMAGE_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(prompt: &str) -> Input {
        Input {
            mode: "text".into(),
            prompt: Some(prompt.into()),
            width: Some(640),
            height: Some(360),
            duration_seconds: Some(2.0),
            image_url: None,
            frame_rate: Some(24),
            zoom_speed: None,
            seed: None,
        }
    }

    #[test]
    fn a_seed_picks_the_same_background_every_time_and_none_the_first() {
        assert_eq!(background(None), BACKGROUNDS[0]);
        assert_eq!(background(Some(7)), background(Some(7)));
        assert_eq!(background(Some(1)), BACKGROUNDS[1]);
        assert_eq!(background(Some(u32::MAX)), BACKGROUNDS[u32::MAX as usize % BACKGROUNDS.len()]);
    }

    #[test]
    fn input_is_checked_before_a_job_is_accepted() {
        assert!(check_input(&text("a cat")).is_ok());
        assert!(check_input(&text("  ")).is_err());
        assert!(check_input(&Input { width: Some(641), ..text("a") }).is_err());
        assert!(check_input(&Input { duration_seconds: Some(61.0), ..text("a") }).is_err());
        assert!(check_input(&Input { mode: "image".into(), ..text("a") }).is_err());
        assert!(check_input(&Input { mode: "audio".into(), ..text("a") }).is_err());
    }

    #[test]
    fn ffmpeg_is_told_the_image_format_and_nothing_else_is_opened() {
        assert_eq!(demuxer_for(b"\x89PNG\r\n\x1a\n...."), Some("png_pipe"));
        assert_eq!(demuxer_for(&[0xff, 0xd8, 0xff, 0xe0]), Some("jpeg_pipe"));
        assert_eq!(demuxer_for(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp_pipe"));
        assert_eq!(demuxer_for(b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n"), None);
        assert_eq!(demuxer_for(b"ffconcat version 1.0\n"), None);
    }

    #[test]
    fn long_prompts_wrap_into_at_most_eight_lines() {
        let wrapped = wrap(&"word ".repeat(200), 20);
        assert!(wrapped.lines().count() <= 8);
        assert!(wrapped.lines().all(|l| l.chars().count() <= 20));
        assert_eq!(wrap("short one", 20), "short one");
    }
}
