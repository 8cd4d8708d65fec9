//! What an uploaded source image really is, from its first bytes: PNG, JPEG
//! or WebP, with the frame size its header declares. Nothing is decoded;
//! only the container's header is read, so a file that is not an image (a
//! script, a video, anything for an unchecked ffmpeg demuxer) is refused
//! before it costs a credit or reaches a provider.

use crate::model::request::ImageType;

/// How many leading bytes are read: enough for a JPEG whose frame header
/// follows a large EXIF block (an APP1 segment is at most 64 KiB).
pub const SNIFF_BYTES: u64 = 128 * 1024;
/// The shortest side accepted, in pixels.
pub const MIN_SIDE: u32 = 16;
/// The longest side accepted, in pixels.
pub const MAX_SIDE: u32 = 8_192;
/// The most pixels accepted (about 40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;

/// A source image as its header describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The type the bytes show, whatever the upload declared.
    pub kind: ImageType,
    /// In pixels, as the header declares.
    pub width: u32,
    /// In pixels, as the header declares.
    pub height: u32,
}

/// Why an uploaded source image is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not a PNG, JPEG or WebP at all.
    #[error("is not a PNG, JPEG or WebP image")]
    NotAnImage,
    /// An image of another type than the upload declared.
    #[error("is a {found} image, but the upload was declared as {declared}")]
    WrongType {
        /// The MIME type the upload was declared as.
        declared: &'static str,
        /// The MIME type the bytes show.
        found: &'static str,
    },
    /// The header could not be read to its frame size.
    #[error("is a {0} image whose size could not be read from its header")]
    Unreadable(&'static str),
    /// A side shorter than [`MIN_SIDE`] or longer than [`MAX_SIDE`], or more than [`MAX_PIXELS`] pixels.
    #[error("is {width}x{height} pixels; each side must be from {MIN_SIDE} to {MAX_SIDE} and the image at most {MAX_PIXELS} pixels")]
    BadDimensions {
        /// In pixels.
        width: u32,
        /// In pixels.
        height: u32,
    },
}

impl ImageError {
    /// Whether the bytes are not an image of the declared type (415) rather
    /// than an image we will not take (400).
    pub fn is_wrong_media_type(&self) -> bool {
        matches!(self, ImageError::NotAnImage | ImageError::WrongType { .. })
    }
}

/// The type of image `bytes` start with, by their magic numbers.
pub fn kind_of(bytes: &[u8]) -> Option<ImageType> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageType::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageType::Jpeg)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageType::Webp)
    } else {
        None
    }
}

/// Checks that `bytes` (the start of the object) are an image of the
/// `declared` type with bounded dimensions.
pub fn check(bytes: &[u8], declared: ImageType) -> Result<ImageInfo, ImageError> {
    let kind = kind_of(bytes).ok_or(ImageError::NotAnImage)?;
    if kind != declared {
        return Err(ImageError::WrongType { declared: declared.mime(), found: kind.mime() });
    }
    let (width, height) = match kind {
        ImageType::Png => png_size(bytes),
        ImageType::Jpeg => jpeg_size(bytes),
        ImageType::Webp => webp_size(bytes),
    }
    .ok_or(ImageError::Unreadable(kind.mime()))?;
    let sides = MIN_SIDE..=MAX_SIDE;
    if !sides.contains(&width) || !sides.contains(&height) || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::BadDimensions { width, height });
    }
    Ok(ImageInfo { kind, width, height })
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

/// The first chunk of a PNG must be IHDR: width and height, big-endian.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(12..16)? != b"IHDR" || be32(bytes, 8)? != 13 {
        return None;
    }
    Some((be32(bytes, 16)?, be32(bytes, 20)?))
}

/// Walks the JPEG's segments to its first frame header (SOFn).
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        // Markers may be padded with 0xFF.
        while *bytes.get(at)? == 0xff && *bytes.get(at + 1)? == 0xff {
            at += 1;
        }
        if *bytes.get(at)? != 0xff {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xd0..=0xd7 => at += 2,
            // Start of scan or end of image before a frame header: not a usable image.
            0xd9 | 0xda => return None,
            0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                let height = be16(bytes, at + 5)?;
                let width = be16(bytes, at + 7)?;
                return Some((u32::from(width), u32::from(height)));
            }
            _ => {
                let length = usize::from(be16(bytes, at + 2)?);
                if length < 2 {
                    return None;
                }
                at += 2 + length;
            }
        }
    }
}

/// WebP's first chunk: lossy (`VP8 `), lossless (`VP8L`) or extended (`VP8X`).
fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    match bytes.get(12..16)? {
        b"VP8 " => {
            // A key frame: the start code, then 14-bit width and height.
            if bytes.get(23..26)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            Some((u32::from(le16(bytes, 26)? & 0x3fff), u32::from(le16(bytes, 28)? & 0x3fff)))
        }
        b"VP8L" => {
            if *bytes.get(20)? != 0x2f {
                return None;
            }
            let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8X" => Some((le24(bytes, 24)? + 1, le24(bytes, 27)? + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = vec![0xff, 0xd8];
        // An APP1 (EXIF-like) segment of 1000 bytes, then a DQT, then SOF2.
        bytes.extend([0xff, 0xe1]);
        bytes.extend(1000u16.to_be_bytes());
        bytes.extend(vec![0u8; 998]);
        bytes.extend([0xff, 0xdb, 0x00, 0x04, 0x00, 0x00]);
        bytes.extend([0xff, 0xc2, 0x00, 0x11, 0x08]);
        bytes.extend(height.to_be_bytes());
        bytes.extend(width.to_be_bytes());
        bytes.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        bytes
    }

    fn riff(chunk: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut bytes = b"RIFF\x00\x00\x00\x00WEBP".to_vec();
        bytes.extend(chunk);
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn png_jpeg_and_webp_headers_give_their_sizes() {
        assert_eq!(check(&png(320, 240), ImageType::Png), Ok(ImageInfo { kind: ImageType::Png, width: 320, height: 240 }));
        assert_eq!(check(&jpeg(640, 480), ImageType::Jpeg).map(|i| (i.width, i.height)), Ok((640, 480)));
        // Lossy: frame tag (3 bytes), start code, 14-bit sizes.
        let mut vp8 = vec![0x30, 0x01, 0x00, 0x9d, 0x01, 0x2a];
        vp8.extend(800u16.to_le_bytes());
        vp8.extend(600u16.to_le_bytes());
        assert_eq!(check(&riff(b"VP8 ", &vp8), ImageType::Webp).map(|i| (i.width, i.height)), Ok((800, 600)));
        // Lossless: signature 0x2f, then (width-1) and (height-1) in 14 bits each.
        let bits: u32 = (100 - 1) | ((50 - 1) << 14);
        let mut vp8l = vec![0x2f];
        vp8l.extend(bits.to_le_bytes());
        assert_eq!(check(&riff(b"VP8L", &vp8l), ImageType::Webp).map(|i| (i.width, i.height)), Ok((100, 50)));
        // Extended: flags, reserved, then 24-bit (width-1) and (height-1).
        let mut vp8x = vec![0u8; 4];
        vp8x.extend(&1919u32.to_le_bytes()[..3]);
        vp8x.extend(&1079u32.to_le_bytes()[..3]);
        assert_eq!(check(&riff(b"VP8X", &vp8x), ImageType::Webp).map(|i| (i.width, i.height)), Ok((1920, 1080)));
    }

    #[test]
    fn a_script_or_a_video_declared_as_an_image_is_not_an_image() {
        for bytes in [&b"#!/bin/sh\nrm -rf /\n"[..], b"\x00\x00\x00\x18ftypmp42", b"", b"\x89PN", b"RIFF\x00\x00\x00\x00AVI "] {
            assert_eq!(check(bytes, ImageType::Png), Err(ImageError::NotAnImage), "{bytes:?}");
        }
        assert!(ImageError::NotAnImage.is_wrong_media_type());
    }

    #[test]
    fn an_image_of_another_type_than_declared_is_refused() {
        let err = check(&jpeg(640, 480), ImageType::Png).unwrap_err();
        assert_eq!(err, ImageError::WrongType { declared: "image/png", found: "image/jpeg" });
        assert!(err.is_wrong_media_type());
    }

    #[test]
    fn sizes_out_of_bounds_or_headers_cut_short_are_refused() {
        for (w, h) in [(0, 100), (15, 100), (8_193, 100), (100, 100_000), (8_000, 8_000)] {
            assert_eq!(check(&png(w, h), ImageType::Png), Err(ImageError::BadDimensions { width: w, height: h }), "{w}x{h}");
        }
        assert!(!ImageError::BadDimensions { width: 1, height: 1 }.is_wrong_media_type());
        assert_eq!(check(&png(320, 240)[..20], ImageType::Png), Err(ImageError::Unreadable("image/png")));
        assert_eq!(check(&[0xff, 0xd8, 0xff, 0xe0, 0x00], ImageType::Jpeg), Err(ImageError::Unreadable("image/jpeg")));
        // A JPEG that reaches its scan without a frame header.
        assert_eq!(check(&[0xff, 0xd8, 0xff, 0xda, 0, 2], ImageType::Jpeg), Err(ImageError::Unreadable("image/jpeg")));
        let mut bad_length = jpeg(640, 480);
        bad_length[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(check(&bad_length, ImageType::Jpeg), Err(ImageError::Unreadable("image/jpeg")));
    }
}
