//! Choosing which simulcast layer a receiver gets.
//!
//! Today the choice follows the receiver's requested max height. Bandwidth
//! driven allocation (TWCC estimate, last-N, on-stage) plugs in here: it gets
//! the same view of the layers plus an estimate, and returns the same answer.

/// What the allocator knows of one simulcast layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerView {
    /// Height in pixels (measured from keyframes, else declared).
    pub height: u32,
    /// Packets arrived recently; a layer the publisher stopped sending (CPU or
    /// bandwidth adaptation) is not chosen.
    pub active: bool,
}

/// The layer to forward for a receiver that wants at most `max_height`:
/// the tallest active layer that fits, else the smallest active one.
/// `None` when nothing should be forwarded.
pub fn choose_layer(layers: &[LayerView], max_height: u32) -> Option<usize> {
    if max_height == 0 {
        return None;
    }
    let active = || layers.iter().enumerate().filter(|(_, l)| l.active);
    active()
        .filter(|(_, l)| l.height <= max_height)
        .max_by_key(|(_, l)| l.height)
        .or_else(|| active().min_by_key(|(_, l)| l.height))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(height: u32, active: bool) -> LayerView {
        LayerView { height, active }
    }

    #[test]
    fn picks_tallest_layer_within_requested_height() {
        let layers = [l(180, true), l(360, true), l(720, true)];
        assert_eq!(choose_layer(&layers, 180), Some(0));
        assert_eq!(choose_layer(&layers, 359), Some(0));
        assert_eq!(choose_layer(&layers, 360), Some(1));
        assert_eq!(choose_layer(&layers, 1080), Some(2));
    }

    #[test]
    fn falls_back_to_smallest_active_layer_and_skips_inactive_ones() {
        let layers = [l(180, false), l(360, true), l(720, false)];
        assert_eq!(choose_layer(&layers, 90), Some(1));
        assert_eq!(choose_layer(&layers, 720), Some(1));
        assert_eq!(choose_layer(&[l(180, false)], 720), None);
    }

    #[test]
    fn zero_height_means_no_video() {
        assert_eq!(choose_layer(&[l(180, true)], 0), None);
    }
}
