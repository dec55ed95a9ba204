//! The interrupt line a device raises, apart from how the VM delivers it (an eventfd wired to
//! the in-kernel irqchip), so device models stay free of KVM and can be tested alone.

use vmm_sys_util::eventfd::EventFd;

/// An ISA interrupt line, edge-triggered as the PIC sees it: each `raise` is one edge.
pub(crate) trait IrqLine: Send {
    fn raise(&self);
}

/// A line the VM wires to the irqchip with KVM_IRQFD: a write to the eventfd is one edge.
pub(crate) struct EventFdLine(pub(crate) EventFd);

impl IrqLine for EventFdLine {
    fn raise(&self) {
        if let Err(e) = self.0.write(1) {
            log::warn!("interrupt lost: {e}");
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts edges, for tests.
    #[derive(Clone, Default)]
    pub(crate) struct CountingLine(pub(crate) Arc<AtomicUsize>);

    impl CountingLine {
        pub(crate) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl super::IrqLine for CountingLine {
        fn raise(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
