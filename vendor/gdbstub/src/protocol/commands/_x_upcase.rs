use super::prelude::*;
use crate::protocol::common::hex::decode_bin_buf;

#[derive(Debug)]
pub struct X<'a> {
    pub addr: &'a [u8],
    pub val: &'a [u8],
}

impl<'a> ParseCommand<'a> for X<'a> {
    #[inline(always)]
    fn from_packet(buf: PacketBuf<'a>) -> Option<Self> {
        let body = buf.into_body();

        let mut body = body.splitn_mut(3, |&b| b == b',' || b == b':');
        let addr = decode_hex_buf(body.next()?).ok()?;
        // gdbvisor patch: the length must match the data, as for `M` (`X200000,1:ABCD` used
        // to write four bytes). A zero-length `X` is gdb's probe for the packet.
        let len: usize = decode_hex(body.next()?).ok()?;
        let val = decode_bin_buf(body.next()?)?;
        if val.len() != len {
            return None;
        }

        Some(X { addr, val })
    }
}
