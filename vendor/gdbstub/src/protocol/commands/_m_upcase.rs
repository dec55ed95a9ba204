use super::prelude::*;

#[derive(Debug)]
pub struct M<'a> {
    pub addr: &'a [u8],
    pub val: &'a [u8],
}

impl<'a> ParseCommand<'a> for M<'a> {
    #[inline(always)]
    fn from_packet(buf: PacketBuf<'a>) -> Option<Self> {
        let body = buf.into_body();

        let mut body = body.split_mut(|&b| b == b',' || b == b':');
        let addr = decode_hex_buf(body.next()?).ok()?;
        // gdbvisor patch: the length must match the data (`M200000,1:00112233` used to write
        // four bytes and answer OK); gdbserver refuses such a packet.
        let len: usize = decode_hex(body.next()?).ok()?;
        let val = decode_hex_data(body.next()?)?;
        if val.len() != len {
            return None;
        }

        Some(M { addr, val })
    }
}
