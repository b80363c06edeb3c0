//! Thumbnails of uploaded images (PNG, JPEG, GIF's first frame, WebP).
//!
//! An image is the client's bytes: a few hundred bytes of PNG can declare 100000 × 100000
//! pixels, 40 GB once decoded. The decoder's [`image::Limits`] are set before anything is
//! decoded, so such a bomb is refused from its header ([`ThumbnailError::TooLarge`]).
//!
//! [`thumbnail`] is synchronous and CPU-heavy: the server calls it off the async runtime.

use std::io::Cursor;

use image::{DynamicImage, ImageError, ImageFormat, ImageReader};

/// What an image may declare before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbnailLimits {
    /// The widest image decoded, in pixels.
    pub max_width: u32,
    /// The tallest image decoded, in pixels.
    pub max_height: u32,
    /// The most memory the decoder may allocate, in bytes (the decoded image included).
    pub max_alloc: u64,
}

impl Default for ThumbnailLimits {
    /// 12 000 × 12 000 pixels and 256 MiB: any photo a phone takes, nothing a bomb needs.
    fn default() -> ThumbnailLimits {
        ThumbnailLimits {
            max_width: 12_000,
            max_height: 12_000,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

impl ThumbnailLimits {
    fn to_image_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// A thumbnail: PNG when the source has an alpha channel, JPEG otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// The source image's size.
    pub source_width: u32,
    pub source_height: u32,
}

/// Why no thumbnail was made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("not an image format thumbnails are made of (PNG, JPEG, GIF, WebP)")]
    Unsupported,
    #[error("the image is too large to decode")]
    TooLarge,
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

/// The quality of JPEG thumbnails (of 100): small files, no visible blocks at thumbnail size.
const JPEG_QUALITY: u8 = 80;

/// A thumbnail of the image in `bytes`, within `max_side` × `max_side` pixels with the source's
/// aspect ratio (a smaller image keeps its size), refusing any image beyond `limits`.
pub fn thumbnail(
    bytes: &[u8],
    max_side: u32,
    limits: &ThumbnailLimits,
) -> Result<Thumbnail, ThumbnailError> {
    let source = decode(bytes, limits)?;
    let (source_width, source_height) = (source.width(), source.height());
    let (width, height) = fit(source_width, source_height, max_side.max(1));
    let scaled = if (width, height) == (source_width, source_height) {
        source
    } else {
        source.thumbnail_exact(width, height)
    };
    let (bytes, mime) = encode(&scaled)?;
    Ok(Thumbnail {
        bytes,
        mime,
        width,
        height,
        source_width,
        source_height,
    })
}

/// Decodes `bytes` (the first frame of an animation) within `limits`, set before decoding.
fn decode(bytes: &[u8], limits: &ThumbnailLimits) -> Result<DynamicImage, ThumbnailError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| ThumbnailError::Corrupt(err.to_string()))?;
    let supported = matches!(
        reader.format(),
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP)
    );
    if !supported {
        return Err(ThumbnailError::Unsupported);
    }
    reader.limits(limits.to_image_limits());
    reader.decode().map_err(ThumbnailError::from)
}

impl From<ImageError> for ThumbnailError {
    fn from(err: ImageError) -> ThumbnailError {
        match err {
            ImageError::Limits(_) => ThumbnailError::TooLarge,
            ImageError::Unsupported(_) => ThumbnailError::Unsupported,
            err => ThumbnailError::Corrupt(err.to_string()),
        }
    }
}

/// The size of a `width` × `height` image scaled down to fit in `max_side` × `max_side`.
fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    if width <= max_side && height <= max_side {
        return (width, height);
    }
    // The longer side becomes `max_side`; the shorter is rounded, and never vanishes.
    let scale = |short: u32, long: u32| {
        let scaled =
            (u64::from(short) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(scaled).unwrap_or(max_side).clamp(1, max_side)
    };
    if width >= height {
        (max_side, scale(height, width))
    } else {
        (scale(width, height), max_side)
    }
}

/// `image` as PNG when it has an alpha channel (JPEG has none), as JPEG otherwise.
fn encode(image: &DynamicImage) -> Result<(Vec<u8>, &'static str), ThumbnailError> {
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder};
    let mut bytes = Vec::new();
    let mime = if image.color().has_alpha() {
        image
            .to_rgba8()
            .write_with_encoder(PngEncoder::new(&mut bytes))?;
        "image/png"
    } else {
        image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))?;
        "image/jpeg"
    };
    Ok((bytes, mime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image
            .write_to(&mut bytes, format)
            .expect("encoding a test image");
        bytes.into_inner()
    }

    fn rgb(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }))
    }

    fn rgba(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(width, height, Rgba([9, 99, 199, 50])))
    }

    /// Checks that `thumb` is a well-formed image of its stated type and size.
    fn assert_decodes(thumb: &Thumbnail) {
        let format = ImageFormat::from_mime_type(thumb.mime).expect("a known type");
        let image = image::load_from_memory_with_format(&thumb.bytes, format).expect("decodes");
        assert_eq!((image.width(), image.height()), (thumb.width, thumb.height));
    }

    fn make(bytes: &[u8]) -> Result<Thumbnail, ThumbnailError> {
        thumbnail(bytes, 320, &ThumbnailLimits::default())
    }

    #[test]
    fn a_landscape_png_is_scaled_to_fit() {
        let thumb = make(&encoded(rgb(640, 480), ImageFormat::Png)).expect("a thumbnail");
        assert_eq!((thumb.width, thumb.height), (320, 240));
        assert_eq!((thumb.source_width, thumb.source_height), (640, 480));
        assert_eq!(thumb.mime, "image/jpeg", "no alpha: JPEG");
        assert_decodes(&thumb);
    }

    #[test]
    fn a_portrait_jpeg_is_scaled_to_fit() {
        let thumb = make(&encoded(rgb(400, 800), ImageFormat::Jpeg)).expect("a thumbnail");
        assert_eq!((thumb.width, thumb.height), (160, 320));
        assert_eq!((thumb.source_width, thumb.source_height), (400, 800));
        assert_eq!(thumb.mime, "image/jpeg");
        assert_decodes(&thumb);
    }

    #[test]
    fn alpha_gives_png_and_small_images_are_not_upscaled() {
        let thumb = make(&encoded(rgba(100, 50), ImageFormat::Png)).expect("a thumbnail");
        assert_eq!(thumb.mime, "image/png");
        assert_eq!((thumb.width, thumb.height), (100, 50));
        assert_decodes(&thumb);
        let tiny = thumbnail(
            &encoded(rgba(100, 50), ImageFormat::Png),
            0,
            &Default::default(),
        );
        assert_eq!(
            tiny.map(|t| (t.width, t.height)).ok(),
            Some((1, 1)),
            "a side of 0 is 1"
        );
    }

    #[test]
    fn gif_and_webp_are_thumbnailed() {
        for format in [ImageFormat::Gif, ImageFormat::WebP] {
            let thumb = make(&encoded(rgba(500, 1000), format)).expect("a thumbnail");
            assert_eq!((thumb.width, thumb.height), (160, 320), "{format:?}");
            assert_decodes(&thumb);
        }
    }

    #[test]
    fn extreme_shapes_keep_a_pixel() {
        assert_eq!(fit(10_000, 1, 320), (320, 1));
        assert_eq!(fit(3, 9_000, 320), (1, 320));
        assert_eq!(fit(321, 320, 320), (320, 319));
        assert_eq!(fit(5, 5, 1), (1, 1));
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [&b""[..], b"hello, world", b"%PDF-1.7\n", &[0xff; 64]] {
            let err = make(bytes).expect_err("not an image");
            assert!(
                matches!(
                    err,
                    ThumbnailError::Unsupported | ThumbnailError::Corrupt(_)
                ),
                "{err:?}"
            );
        }
        let mut truncated = encoded(rgb(64, 64), ImageFormat::Png);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(make(&truncated), Err(ThumbnailError::Corrupt(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let png = encoded(rgb(200, 100), ImageFormat::Png);
        let narrow = ThumbnailLimits {
            max_width: 199,
            ..ThumbnailLimits::default()
        };
        assert!(matches!(
            thumbnail(&png, 64, &narrow),
            Err(ThumbnailError::TooLarge)
        ));
        let stingy = ThumbnailLimits {
            max_alloc: 1024,
            ..ThumbnailLimits::default()
        };
        assert!(matches!(
            thumbnail(&png, 64, &stingy),
            Err(ThumbnailError::TooLarge)
        ));
    }

    /// The CRC-32 (ISO-HDLC) PNG chunks carry, bit by bit: enough for one test chunk.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let mut png = encoded(rgb(1, 1), ImageFormat::Png);
        // Signature (8), IHDR length (4), then "IHDR", width, height at 16..24, CRC at 29..33
        // over the chunk type and data (12..29).
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(
            crc32(&png[12..29]).to_be_bytes(),
            png[29..33],
            "the CRC is right"
        );
        png[16..20].copy_from_slice(&60_000_u32.to_be_bytes());
        png[20..24].copy_from_slice(&60_000_u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(make(&png), Err(ThumbnailError::TooLarge)));

        // Within the dimension limits, the memory limit still refuses it before decoding.
        let roomy = ThumbnailLimits {
            max_width: u32::MAX,
            max_height: u32::MAX,
            ..ThumbnailLimits::default()
        };
        assert!(matches!(
            thumbnail(&png, 320, &roomy),
            Err(ThumbnailError::TooLarge)
        ));
    }
}
