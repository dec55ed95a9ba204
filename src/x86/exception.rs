//! The x86 exceptions: their names, which push an error code and what it says, and how two
//! of them combine while the first is being delivered (SDM Vol. 3 §6.15, Table 6-5).

use std::fmt;

use super::paging::PageFaultCode;

/// An interrupt vector (0-255); 0-31 are the CPU's exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vector(pub u8);

/// The exceptions' mnemonics and names, by vector (reserved vectors have none).
const EXCEPTIONS: [(&str, &str); 32] = [
    ("#DE", "divide error"),
    ("#DB", "debug"),
    ("NMI", "non-maskable interrupt"),
    ("#BP", "breakpoint"),
    ("#OF", "overflow"),
    ("#BR", "bound range exceeded"),
    ("#UD", "invalid opcode"),
    ("#NM", "device not available"),
    ("#DF", "double fault"),
    ("", "coprocessor segment overrun"),
    ("#TS", "invalid TSS"),
    ("#NP", "segment not present"),
    ("#SS", "stack-segment fault"),
    ("#GP", "general protection"),
    ("#PF", "page fault"),
    ("", ""),
    ("#MF", "x87 floating-point error"),
    ("#AC", "alignment check"),
    ("#MC", "machine check"),
    ("#XM", "SIMD floating-point"),
    ("#VE", "virtualization exception"),
    ("#CP", "control protection"),
    ("", ""),
    ("", ""),
    ("", ""),
    ("", ""),
    ("", ""),
    ("", ""),
    ("#HV", "hypervisor injection"),
    ("#VC", "VMM communication"),
    ("#SX", "security exception"),
    ("", ""),
];

impl Vector {
    pub const DE: Vector = Vector(0);
    pub const UD: Vector = Vector(6);
    pub const DF: Vector = Vector(8);
    pub const TS: Vector = Vector(10);
    pub const NP: Vector = Vector(11);
    pub const SS: Vector = Vector(12);
    pub const GP: Vector = Vector(13);
    pub const PF: Vector = Vector(14);

    /// `#PF`, or `vector 0x40` for one with no mnemonic.
    pub fn mnemonic(self) -> String {
        match EXCEPTIONS.get(usize::from(self.0)) {
            Some((m, _)) if !m.is_empty() => (*m).to_string(),
            _ => format!("vector {:#04x}", self.0),
        }
    }

    /// `page fault`; empty for vectors that are not a named exception.
    pub fn name(self) -> &'static str {
        EXCEPTIONS.get(usize::from(self.0)).map_or("", |(_, n)| n)
    }

    /// Whether the CPU pushes an error code when it delivers this exception (SDM Table 6-1).
    pub fn has_error_code(self) -> bool {
        matches!(self.0, 8 | 10..=14 | 17 | 21 | 29 | 30)
    }

    /// The class that decides what a fault during its delivery becomes (SDM Table 6-4).
    pub fn class(self) -> ExceptionClass {
        match self.0 {
            0 | 10..=13 => ExceptionClass::Contributory,
            14 => ExceptionClass::PageFault,
            8 => ExceptionClass::DoubleFault,
            _ => ExceptionClass::Benign,
        }
    }

    /// What the CPU does when `second` is raised while it delivers `self` (SDM Table 6-5).
    pub fn then(self, second: Vector) -> Escalation {
        use ExceptionClass::*;
        match (self.class(), second.class()) {
            (DoubleFault, _) => Escalation::Shutdown,
            (Contributory, Contributory) | (PageFault, Contributory) | (PageFault, PageFault) => {
                Escalation::DoubleFault
            }
            _ => Escalation::Serially(second),
        }
    }

    /// The error code as a reader wants it: the `#PF` bits, or the selector an `#GP`/`#TS`/
    /// `#NP`/`#SS` names; `None` for vectors without one.
    pub fn describe_error_code(self, code: u32) -> Option<String> {
        if !self.has_error_code() {
            return None;
        }
        Some(match self {
            Vector::PF => PageFaultCode::from_bits_retain(code).to_string(),
            Vector::DF => format!("{code:#x} (always 0)"),
            _ => SelectorErrorCode(code).to_string(),
        })
    }
}

impl fmt::Display for Vector {
    /// `#PF (page fault)`, `vector 0x40`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "" => write!(f, "{}", self.mnemonic()),
            name => write!(f, "{} ({name})", self.mnemonic()),
        }
    }
}

/// How an exception combines with one raised while it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionClass {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

/// What a second exception during the delivery of a first one becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The second is delivered instead (the first is lost or re-raised later).
    Serially(Vector),
    /// A `#DF` is delivered.
    DoubleFault,
    /// The processor shuts down: a triple fault.
    Shutdown,
}

/// The error code of `#TS`, `#NP`, `#SS`, `#GP` (and `#DF`, `#AC`): which descriptor the fault
/// is about (SDM §6.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorErrorCode(pub u32);

impl SelectorErrorCode {
    /// EXT: an event external to the program (an interrupt, an earlier exception) caused it.
    pub fn external(self) -> bool {
        self.0 & 1 != 0
    }

    /// The table the index is in.
    pub fn table(self) -> ErrorTable {
        if self.0 & 2 != 0 {
            ErrorTable::Idt
        } else if self.0 & 4 != 0 {
            ErrorTable::Ldt
        } else {
            ErrorTable::Gdt
        }
    }

    /// The entry's index (a vector for the IDT).
    pub fn index(self) -> u16 {
        ((self.0 >> 3) & 0x1fff) as u16
    }
}

/// The table a selector error code points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorTable {
    Gdt,
    Ldt,
    Idt,
}

impl fmt::Display for SelectorErrorCode {
    /// `0x0 (none)`, `0x6a (IDT vector 0x0d)`, `0x2b (GDT index 5, selector 0x28, external)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} (", self.0)?;
        if self.0 & 0xffff == 0 {
            write!(f, "no selector")?;
        } else {
            match self.table() {
                ErrorTable::Idt => write!(f, "IDT vector {:#04x}", self.index())?,
                table => {
                    let ti = if table == ErrorTable::Ldt { 4 } else { 0 };
                    let name = if table == ErrorTable::Ldt {
                        "LDT"
                    } else {
                        "GDT"
                    };
                    write!(
                        f,
                        "{name} index {}, selector {:#06x}",
                        self.index(),
                        (self.index() << 3) | ti
                    )?;
                }
            }
        }
        if self.external() {
            write!(f, ", external")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_error_codes() {
        assert_eq!(Vector::PF.to_string(), "#PF (page fault)");
        assert_eq!(Vector(0x40).to_string(), "vector 0x40");
        assert_eq!(Vector(15).mnemonic(), "vector 0x0f");
        assert!(Vector::GP.has_error_code() && !Vector::UD.has_error_code());
        assert_eq!(Vector::UD.describe_error_code(0), None);
        assert_eq!(
            Vector::GP.describe_error_code(0x6a).as_deref(),
            Some("0x6a (IDT vector 0x0d)")
        );
        assert_eq!(
            Vector::NP.describe_error_code(0x29).as_deref(),
            Some("0x29 (GDT index 5, selector 0x0028, external)")
        );
        assert_eq!(
            Vector::GP.describe_error_code(0).as_deref(),
            Some("0x0 (no selector)")
        );
        assert_eq!(
            Vector::TS.describe_error_code(0x1c).as_deref(),
            Some("0x1c (LDT index 3, selector 0x001c)")
        );
    }

    #[test]
    fn double_and_triple_faults() {
        assert_eq!(Vector::GP.then(Vector::NP), Escalation::DoubleFault);
        assert_eq!(Vector::PF.then(Vector::PF), Escalation::DoubleFault);
        assert_eq!(Vector::PF.then(Vector::GP), Escalation::DoubleFault);
        assert_eq!(
            Vector::GP.then(Vector::PF),
            Escalation::Serially(Vector::PF)
        );
        assert_eq!(
            Vector::UD.then(Vector::GP),
            Escalation::Serially(Vector::GP)
        );
        assert_eq!(Vector::DF.then(Vector::UD), Escalation::Shutdown);
    }
}
