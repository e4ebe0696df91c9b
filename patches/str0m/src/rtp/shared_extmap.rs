//! Tern patch (patches/README.md): one extension map per thread for the
//! connections that negotiated the same extensions.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::ExtensionMap;

/// Tern patch (patches/README.md): the connections of one thread that
/// negotiated the same extensions share one map. A packet's header is
/// written from its media's map (an entry per id, 16 of them, a dozen
/// cache lines); a bridge forwarding a packet to hundreds of receivers
/// otherwise read each receiver's own copy, no longer in the CPU's caches,
/// for every copy. A map is only read once shared, so an equal one serves
/// the same; maps with an application's own serializer are not shared (two
/// equal maps may hold different serializers).
pub(crate) fn shared_extmap(exts: ExtensionMap) -> Arc<ExtensionMap> {
    /// Distinct maps remembered per thread: a bridge's receivers negotiate
    /// one or two (audio, video); the rest are simply not shared.
    const SHARED_MAX: usize = 8;
    thread_local! {
        static SHARED: RefCell<Vec<Weak<ExtensionMap>>> =
            const { RefCell::new(Vec::new()) };
    }
    if exts.has_own_serializer() {
        return Arc::new(exts);
    }
    SHARED.with_borrow_mut(|maps| {
        maps.retain(|m| m.strong_count() > 0);
        if let Some(same) = maps.iter().filter_map(Weak::upgrade).find(|m| **m == exts) {
            return same;
        }
        let map = Arc::new(exts);
        if maps.len() < SHARED_MAX {
            maps.push(Arc::downgrade(&map));
        }
        map
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::rtp_::{Extension, ExtensionSerializer, ExtensionValues};

    #[test]
    fn connections_that_negotiated_the_same_extensions_share_one_map() {
        let a = shared_extmap(ExtensionMap::standard());
        let b = shared_extmap(ExtensionMap::standard());
        assert!(Arc::ptr_eq(&a, &b), "equal maps are one");

        let mut other = ExtensionMap::standard();
        other.set(5, Extension::PlayoutDelay);
        let c = shared_extmap(other);
        assert!(!Arc::ptr_eq(&a, &c), "a different map is its own");
        assert_eq!(*c, {
            let mut m = ExtensionMap::standard();
            m.set(5, Extension::PlayoutDelay);
            m
        });

        // Only connections hold a map: none outlives its last one.
        assert_eq!(Arc::strong_count(&a), 2);
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn a_map_with_an_applications_own_serializer_is_not_shared() {
        #[derive(Debug)]
        struct Own;
        impl ExtensionSerializer for Own {
            fn write_to(&self, _buf: &mut [u8], _ev: &ExtensionValues) -> usize {
                0
            }
            fn parse_value(&self, _buf: &[u8], _ev: &mut ExtensionValues) -> bool {
                false
            }
            fn is_video(&self) -> bool {
                true
            }
            fn is_audio(&self) -> bool {
                false
            }
        }
        let own = || {
            let mut m = ExtensionMap::standard();
            m.set(6, Extension::with_serializer("urn:example:own", Own));
            m
        };
        // Equal (extensions compare by URI), yet each keeps its serializer.
        assert!(own() == own());
        let a = shared_extmap(own());
        let b = shared_extmap(own());
        assert!(!Arc::ptr_eq(&a, &b));
    }
}
