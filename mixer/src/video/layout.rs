//! Where each participant goes in the composite, and putting them there.
//!
//! Pictures are I420 (what H.264 decoders give and encoders take). The
//! grid is the most square one that holds everyone, tiles in join order,
//! left to right and top to bottom, each picture scaled to fill its tile
//! (nearest neighbour: a tile is smaller than its source, and the encoder
//! smooths what the scaling leaves). Coordinates are even, as I420's
//! chroma planes need.

/// A rectangle of the composite, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// An I420 picture with tightly packed planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Picture {
    /// One colour all over (Y, U, V); `width` and `height` even.
    pub fn filled(width: u32, height: u32, (y, u, v): (u8, u8, u8)) -> Self {
        let (w, h) = (width as usize, height as usize);
        Self {
            width,
            height,
            y: vec![y; w * h],
            u: vec![u; (w / 2) * (h / 2)],
            v: vec![v; (w / 2) * (h / 2)],
        }
    }

    /// The mean (Y, U, V) inside `r`, for tests and checks.
    pub fn mean(&self, r: Rect) -> (f64, f64, f64) {
        let plane_mean = |p: &[u8], stride: u32, r: Rect| {
            let mut sum = 0u64;
            let mut n = 0u64;
            for row in r.y..r.y + r.h {
                let start = (row * stride + r.x) as usize;
                for &s in p.get(start..start + r.w as usize).unwrap_or(&[]) {
                    sum += u64::from(s);
                    n += 1;
                }
            }
            sum as f64 / n.max(1) as f64
        };
        let half = Rect {
            x: r.x / 2,
            y: r.y / 2,
            w: r.w / 2,
            h: r.h / 2,
        };
        (
            plane_mean(&self.y, self.width, r),
            plane_mean(&self.u, self.width / 2, half),
            plane_mean(&self.v, self.width / 2, half),
        )
    }
}

/// The grid for `n` participants in a `width` x `height` composite.
pub fn grid(n: usize, width: u32, height: u32) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let even = |v: u32| v & !1;
    let (tw, th) = (even(width / cols), even(height / rows));
    (0..n as u32)
        .map(|i| Rect {
            x: (i % cols) * tw,
            y: (i / cols) * th,
            w: tw,
            h: th,
        })
        .collect()
}

/// The speaker layout for `n` participants with `main` the speaker: the
/// speaker over the top three quarters, the others in a strip below (at
/// most eight; the rest are left out until they speak). One participant
/// alone fills the frame.
pub fn speaker(n: usize, main: usize, width: u32, height: u32) -> Vec<Option<Rect>> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![Some(Rect {
            x: 0,
            y: 0,
            w: width & !1,
            h: height & !1,
        })];
    }
    let even = |v: u32| v & !1;
    let main_h = even(height * 3 / 4);
    let strip = (n - 1).min(8) as u32;
    let (tw, th) = (even(width / strip), even(height - main_h));
    let mut k = 0;
    (0..n)
        .map(|i| {
            if i == main {
                return Some(Rect {
                    x: 0,
                    y: 0,
                    w: even(width),
                    h: main_h,
                });
            }
            let slot = k;
            k += 1;
            (slot < strip).then(|| Rect {
                x: slot * tw,
                y: main_h,
                w: tw,
                h: th,
            })
        })
        .collect()
}

/// Draw `src` scaled into `r` of `dst`.
pub fn blit(dst: &mut Picture, r: Rect, src: &Picture) {
    if src.width == 0 || src.height == 0 || r.w == 0 || r.h == 0 {
        return;
    }
    let plane = |d: &mut [u8], ds: u32, s: &[u8], sw: u32, sh: u32, r: Rect| {
        for y in 0..r.h {
            let sy = (u64::from(y) * u64::from(sh) / u64::from(r.h)) as u32;
            let drow = ((r.y + y) * ds + r.x) as usize;
            for x in 0..r.w {
                let sx = (u64::from(x) * u64::from(sw) / u64::from(r.w)) as u32;
                if let (Some(o), Some(&v)) =
                    (d.get_mut(drow + x as usize), s.get((sy * sw + sx) as usize))
                {
                    *o = v;
                }
            }
        }
    };
    let half = Rect {
        x: r.x / 2,
        y: r.y / 2,
        w: r.w / 2,
        h: r.h / 2,
    };
    let (sw, sh) = (src.width, src.height);
    plane(&mut dst.y, dst.width, &src.y, sw, sh, r);
    plane(&mut dst.u, dst.width / 2, &src.u, sw / 2, sh / 2, half);
    plane(&mut dst.v, dst.width / 2, &src.v, sw / 2, sh / 2, half);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_holds_everyone_without_overlap_inside_the_frame() {
        for n in 1..=16 {
            let g = grid(n, 640, 360);
            assert_eq!(g.len(), n);
            for (i, a) in g.iter().enumerate() {
                assert!(a.x + a.w <= 640 && a.y + a.h <= 360, "{n}: {a:?}");
                assert!(a.x % 2 == 0 && a.y % 2 == 0 && a.w % 2 == 0 && a.h % 2 == 0);
                for b in &g[i + 1..] {
                    let apart = a.x + a.w <= b.x
                        || b.x + b.w <= a.x
                        || a.y + a.h <= b.y
                        || b.y + b.h <= a.y;
                    assert!(apart, "{n}: {a:?} and {b:?} overlap");
                }
            }
        }
        assert_eq!(
            grid(4, 640, 360)[3],
            Rect {
                x: 320,
                y: 180,
                w: 320,
                h: 180
            }
        );
    }

    #[test]
    fn the_speaker_layout_gives_the_speaker_the_top_and_the_others_a_strip() {
        let l = speaker(4, 2, 640, 360);
        assert_eq!(
            l[2],
            Some(Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 270
            })
        );
        let strip: Vec<Rect> = [0, 1, 3].iter().filter_map(|&i| l[i]).collect();
        assert_eq!(strip.len(), 3);
        assert!(
            strip
                .iter()
                .all(|r| r.y == 270 && r.h == 90 && r.x + r.w <= 640)
        );
        // Beyond eight in the strip, the rest wait for their turn.
        assert_eq!(speaker(12, 0, 640, 360).iter().flatten().count(), 9);
        assert_eq!(
            speaker(1, 0, 640, 360)[0],
            Some(Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 360
            })
        );
    }

    #[test]
    fn blitting_puts_each_colour_in_its_tile() {
        let mut dst = Picture::filled(640, 360, (16, 128, 128));
        let g = grid(2, 640, 360);
        blit(&mut dst, g[0], &Picture::filled(320, 240, (200, 50, 60)));
        blit(&mut dst, g[1], &Picture::filled(160, 120, (90, 180, 200)));
        assert_eq!(dst.mean(g[0]), (200.0, 50.0, 60.0));
        assert_eq!(dst.mean(g[1]), (90.0, 180.0, 200.0));
    }
}
