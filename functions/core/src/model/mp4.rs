//! Reads a video's duration and frame size from the MP4 itself, as its bytes
//! stream past (the worker copies outputs without holding them in memory).
//! Only the `moov` box is kept; `mdat` and everything else is skipped.

/// What an MP4 says about itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Length of the video, in seconds, from the movie header.
    pub duration_seconds: f64,
    /// Frame width in pixels, from the first track that has a frame size.
    pub width: u32,
    /// Frame height in pixels, from the first track that has a frame size.
    pub height: u32,
}

/// A `moov` larger than this is not one we made; refuse rather than buffer it.
const MAX_MOOV_BYTES: u64 = 32 * 1024 * 1024;

/// Reads an MP4's [`VideoInfo`] from its bytes as they are fed in, keeping only the `moov` box.
#[derive(Debug, Default)]
pub struct Mp4Probe {
    /// Bytes of a box header not yet complete.
    header: Vec<u8>,
    /// Bytes still to skip in the current box.
    skipping: u64,
    /// The `moov` box being collected, and how long it is.
    moov: Option<(Vec<u8>, u64)>,
    info: Option<VideoInfo>,
    /// The box sizes did not add up: not an MP4 we can read.
    broken: bool,
    /// The last box runs to the end of the file.
    open_ended: bool,
}

impl Mp4Probe {
    /// A probe that has read nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next bytes of the file, in order; anything after a broken box is ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.broken && !self.open_ended {
            if self.skipping > 0 {
                let n = (self.skipping.min(bytes.len() as u64)) as usize;
                self.skipping -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            if let Some((buffer, size)) = &mut self.moov {
                let wanted = (*size as usize) - buffer.len();
                let n = wanted.min(bytes.len());
                buffer.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if buffer.len() as u64 == *size {
                    let body = std::mem::take(buffer);
                    self.moov = None;
                    self.info = parse_moov(&body);
                }
                continue;
            }
            // Collect a header: 8 bytes, or 16 with a 64-bit size.
            let needed = if self.header.len() >= 8 && be32(&self.header[0..4]) == 1 { 16 } else { 8 };
            let n = (needed - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < needed {
                continue;
            }
            if needed == 8 && be32(&self.header[0..4]) == 1 {
                continue; // read the 64-bit size next
            }
            let kind = [self.header[4], self.header[5], self.header[6], self.header[7]];
            let (size, header_len) = match be32(&self.header[0..4]) {
                0 => {
                    self.open_ended = true;
                    (0, 8)
                }
                1 => (be64(&self.header[8..16]), 16),
                small => (u64::from(small), 8),
            };
            self.header.clear();
            if self.open_ended {
                break;
            }
            if size < header_len {
                self.broken = true;
                break;
            }
            let body_len = size - header_len;
            if &kind == b"moov" && self.info.is_none() {
                if body_len > MAX_MOOV_BYTES {
                    self.broken = true;
                    break;
                }
                self.moov = Some((Vec::with_capacity(body_len as usize), body_len));
                if body_len == 0 {
                    self.moov = None;
                }
            } else {
                self.skipping = body_len;
            }
        }
    }

    /// What was found, once every byte has been fed.
    pub fn finish(self) -> Option<VideoInfo> {
        self.info
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The child boxes of a container body: (type, body).
fn children(mut body: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let size = be32(&body[0..4]) as u64;
        let kind = [body[4], body[5], body[6], body[7]];
        let (header, size) = match size {
            1 if body.len() >= 16 => (16, be64(&body[8..16])),
            0 => (8, body.len() as u64),
            s => (8, s),
        };
        if size < header || size > body.len() as u64 {
            break;
        }
        out.push((kind, &body[header as usize..size as usize]));
        body = &body[size as usize..];
    }
    out
}

fn parse_moov(moov: &[u8]) -> Option<VideoInfo> {
    let boxes = children(moov);
    let mvhd = boxes.iter().find(|(k, _)| k == b"mvhd").map(|(_, b)| *b)?;
    let (timescale, duration) = match *mvhd.first()? {
        0 if mvhd.len() >= 20 => (be32(&mvhd[12..16]), u64::from(be32(&mvhd[16..20]))),
        1 if mvhd.len() >= 32 => (be32(&mvhd[20..24]), be64(&mvhd[24..32])),
        _ => return None,
    };
    if timescale == 0 {
        return None;
    }
    let (width, height) = boxes
        .iter()
        .filter(|(k, _)| k == b"trak")
        .filter_map(|(_, trak)| children(trak).into_iter().find(|(k, _)| k == b"tkhd").map(|(_, b)| b))
        .filter_map(track_size)
        .find(|(w, h)| *w > 0 && *h > 0)?;
    Some(VideoInfo { duration_seconds: duration as f64 / f64::from(timescale), width, height })
}

/// Width and height (16.16 fixed point) from a `tkhd` body.
fn track_size(tkhd: &[u8]) -> Option<(u32, u32)> {
    let offset = match *tkhd.first()? {
        0 => 76,
        1 => 88,
        _ => return None,
    };
    if tkhd.len() < offset + 8 {
        return None;
    }
    Some((be32(&tkhd[offset..offset + 4]) >> 16, be32(&tkhd[offset + 4..offset + 8]) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut body = vec![0u8; 100];
        body[12..16].copy_from_slice(&timescale.to_be_bytes());
        body[16..20].copy_from_slice(&duration.to_be_bytes());
        boxed(b"mvhd", &body)
    }

    fn tkhd_v0(width: u32, height: u32) -> Vec<u8> {
        let mut body = vec![0u8; 84];
        body[76..80].copy_from_slice(&(width << 16).to_be_bytes());
        body[80..84].copy_from_slice(&(height << 16).to_be_bytes());
        boxed(b"tkhd", &body)
    }

    fn sample_file(moov_first: bool) -> Vec<u8> {
        let audio = boxed(b"trak", &tkhd_v0(0, 0));
        let video = boxed(b"trak", &tkhd_v0(1280, 720));
        let moov = boxed(b"moov", &[mvhd_v0(1000, 4_500), audio, video].concat());
        let ftyp = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2mp41");
        let mdat = boxed(b"mdat", &vec![7u8; 10_000]);
        if moov_first {
            [ftyp, moov, mdat].concat()
        } else {
            [ftyp, mdat, moov].concat()
        }
    }

    fn probe_in_chunks(bytes: &[u8], chunk: usize) -> Option<VideoInfo> {
        let mut probe = Mp4Probe::new();
        for part in bytes.chunks(chunk) {
            probe.feed(part);
        }
        probe.finish()
    }

    #[test]
    fn duration_and_size_are_read_whether_moov_comes_first_or_last() {
        let expected = Some(VideoInfo { duration_seconds: 4.5, width: 1280, height: 720 });
        for moov_first in [true, false] {
            let file = sample_file(moov_first);
            for chunk in [1, 3, 7, 64, 4096, file.len()] {
                assert_eq!(probe_in_chunks(&file, chunk), expected, "moov_first={moov_first} chunk={chunk}");
            }
        }
    }

    #[test]
    fn a_file_without_moov_or_with_nonsense_sizes_gives_nothing() {
        let no_moov = [boxed(b"ftyp", b"isom"), boxed(b"mdat", b"1234")].concat();
        assert_eq!(probe_in_chunks(&no_moov, 5), None);
        assert_eq!(probe_in_chunks(b"\0\0\0\x04moov", 3), None);
        assert_eq!(probe_in_chunks(b"not an mp4 at all, just text", 4), None);
        assert_eq!(probe_in_chunks(b"", 4), None);
    }

    #[test]
    fn a_64_bit_box_size_is_followed() {
        let mut big_mdat = 1u32.to_be_bytes().to_vec();
        big_mdat.extend_from_slice(b"mdat");
        big_mdat.extend_from_slice(&(16u64 + 5).to_be_bytes());
        big_mdat.extend_from_slice(b"12345");
        let moov = boxed(b"moov", &[mvhd_v0(600, 1_200), boxed(b"trak", &tkhd_v0(640, 360))].concat());
        let file = [big_mdat, moov].concat();
        assert_eq!(probe_in_chunks(&file, 2), Some(VideoInfo { duration_seconds: 2.0, width: 640, height: 360 }));
    }
}
