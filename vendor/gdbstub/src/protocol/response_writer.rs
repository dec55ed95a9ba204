use crate::conn::Connection;
use crate::internal::BeBytes;
use crate::protocol::SpecificIdKind;
use crate::protocol::SpecificThreadId;
#[cfg(feature = "trace-pkt")]
use alloc::string::String;
#[cfg(feature = "trace-pkt")]
use alloc::vec::Vec;
use num_traits::identities::one;
use num_traits::CheckedRem;
use num_traits::PrimInt;

/// Newtype around a Connection error. Having a newtype allows implementing a
/// `From<ResponseWriterError<C>> for crate::Error<T, C>`, which greatly
/// simplifies some of the error handling in the main gdbstub.
#[derive(Debug, Clone)]
pub struct Error<C>(pub C);

/// How many bytes of a packet a [`ResponseWriter`] gathers before handing them on.
const STAGE: usize = 512;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// gdbvisor patch: where the first run of four equal bytes at or after `from` starts (the
/// shortest run RLE shortens). Looks at 16 positions at a time, which the compiler vectorises:
/// in a hex dump of varied data such runs are rare.
fn next_run_of_four(bytes: &[u8], from: usize) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut k = from;
    while k + 3 < bytes.len() {
        if let Some(window) = bytes.get(k..k + BLOCK + 3) {
            let mut any = false;
            for j in 0..BLOCK {
                any |= (window[j] == window[j + 1])
                    & (window[j + 1] == window[j + 2])
                    & (window[j + 2] == window[j + 3]);
            }
            if !any {
                k += BLOCK;
                continue;
            }
        }
        if bytes[k] == bytes[k + 1] && bytes[k + 1] == bytes[k + 2] && bytes[k + 2] == bytes[k + 3]
        {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// How many bytes `write_hex_buf` turns into digits at a time.
const HEX_CHUNK: usize = 1024;

/// A run's count is sent as `RLE_COUNT_BASE + count`, a printable character.
const RLE_COUNT_BASE: u8 = b' ' - 4;

/// The longest run one `c*n` can encode (its count must stay printable, up to `~`).
const MAX_RUN: u8 = b'~' - RLE_COUNT_BASE;

/// A wrapper around [`Connection`] that computes the single-byte checksum of
/// incoming / outgoing data.
pub struct ResponseWriter<'a, C: Connection> {
    inner: &'a mut C,
    started: bool,
    checksum: u8,

    rle_enabled: bool,
    rle_char: u8,
    rle_repeat: u8,

    /// gdbvisor patch: the packet's bytes are gathered here and reach the connection in one
    /// `write_all` per `STAGE` bytes, not in one `write` call per byte: a call per byte was
    /// most of what a 64 KiB `m` reply cost.
    staged: [u8; STAGE],
    staged_len: usize,

    // buffer to log outgoing packets. only allocates if logging is enabled.
    #[cfg(feature = "trace-pkt")]
    msg: Vec<u8>,
    /// gdbvisor patch: whether packets are logged, asked once a packet instead of at every
    /// byte (the per-byte check kept the byte path out of line).
    #[cfg(feature = "trace-pkt")]
    trace: bool,
}

impl<'a, C: Connection + 'a> ResponseWriter<'a, C> {
    /// Creates a new ResponseWriter
    pub fn new(inner: &'a mut C, rle_enabled: bool) -> Self {
        Self {
            inner,
            started: false,
            checksum: 0,

            rle_enabled,
            rle_char: 0,
            rle_repeat: 0,

            staged: [0; STAGE],
            staged_len: 0,

            #[cfg(feature = "trace-pkt")]
            msg: Vec::new(),
            #[cfg(feature = "trace-pkt")]
            trace: log_enabled!(log::Level::Trace),
        }
    }

    /// Consumes self, writing out the final '#' and checksum
    pub fn flush(mut self) -> Result<(), Error<C::Error>> {
        // don't include the '#' in checksum calculation
        let checksum = if self.rle_enabled {
            self.write(b'#')?;
            // (note: even though `self.write` was called, the the '#' char hasn't been
            // added to the checksum, and is just sitting in the RLE buffer)
            self.checksum
        } else {
            let checksum = self.checksum;
            self.write(b'#')?;
            checksum
        };

        self.write_hex(checksum)?;

        // HACK: "write" a dummy char to force an RLE flush
        if self.rle_enabled {
            self.write(0)?;
        }

        #[cfg(feature = "trace-pkt")]
        trace!("--> ${}", String::from_utf8_lossy(&self.msg));

        self.hand_on_staged()?;
        self.inner.flush().map_err(Error)?;

        Ok(())
    }

    /// Get a mutable reference to the underlying connection, after handing it whatever this
    /// writer has gathered so far (so that what is written to it comes after).
    pub fn as_conn(&mut self) -> Result<&mut C, Error<C::Error>> {
        self.hand_on_staged()?;
        Ok(self.inner)
    }

    fn hand_on_staged(&mut self) -> Result<(), Error<C::Error>> {
        let staged = &self.staged[..self.staged_len];
        self.staged_len = 0;
        self.inner.write_all(staged).map_err(Error)
    }

    #[inline]
    fn stage(&mut self, byte: u8) -> Result<(), Error<C::Error>> {
        if self.staged_len == STAGE {
            self.hand_on_staged()?;
        }
        self.staged[self.staged_len] = byte;
        self.staged_len += 1;
        Ok(())
    }

    #[inline]
    fn inner_write(&mut self, byte: u8) -> Result<(), Error<C::Error>> {
        #[cfg(feature = "trace-pkt")]
        if self.trace {
            if self.rle_enabled {
                match self.msg.as_slice() {
                    [.., c, b'*'] => {
                        let c = *c;
                        self.msg.pop();
                        for _ in 0..(byte - 29) {
                            self.msg.push(c);
                        }
                    }
                    _ => self.msg.push(byte),
                }
            } else {
                self.msg.push(byte)
            }
        }

        if !self.started {
            self.started = true;
            self.stage(b'$')?;
        }

        self.checksum = self.checksum.wrapping_add(byte);
        self.stage(byte)
    }

    #[inline]
    fn write(&mut self, byte: u8) -> Result<(), Error<C::Error>> {
        if !self.rle_enabled {
            return self.inner_write(byte);
        }

        // handle RLE
        if byte == self.rle_char && self.rle_repeat < MAX_RUN {
            self.rle_repeat += 1;
            return Ok(());
        }
        self.end_run()?;
        self.rle_char = byte;
        self.rle_repeat = 1;
        Ok(())
    }

    /// gdbvisor patch: writes out the pending run (`rle_char` `rle_repeat` times), encoded
    /// when that is shorter (the logic `write` had inline, shared with `write_many`).
    fn end_run(&mut self) -> Result<(), Error<C::Error>> {
        loop {
            match self.rle_repeat {
                0 => {} // happens once, after the first char is written
                // RLE doesn't win, just output the byte
                1 | 2 | 3 => {
                    for _ in 0..self.rle_repeat {
                        self.inner_write(self.rle_char)?
                    }
                }
                // RLE would output an invalid char ('#' or '$')
                7 | 8 => {
                    self.inner_write(self.rle_char)?;
                    self.rle_repeat -= 1;
                    continue;
                }
                // RLE wins for repetitions >4
                _ => {
                    self.inner_write(self.rle_char)?;
                    self.inner_write(b'*')?;
                    self.inner_write(RLE_COUNT_BASE + self.rle_repeat)?;
                }
            }
            self.rle_repeat = 0;
            break Ok(());
        }
    }

    /// gdbvisor patch: `bytes` as `write` would write them one by one, but copying the spans
    /// that no run of four or more interrupts in one piece. The last run stays pending, as
    /// after `write`.
    fn write_many(&mut self, bytes: &[u8]) -> Result<(), Error<C::Error>> {
        if !self.rle_enabled {
            return self.write_literal(bytes);
        }
        let mut i = 0;
        // The pending run may go on into `bytes`.
        while i < bytes.len()
            && self.rle_repeat > 0
            && bytes[i] == self.rle_char
            && self.rle_repeat < MAX_RUN
        {
            self.rle_repeat += 1;
            i += 1;
        }
        if i == bytes.len() {
            return Ok(());
        }
        self.end_run()?;
        let mut literal = i;
        while let Some(run_start) = next_run_of_four(bytes, i) {
            let c = bytes[run_start];
            let mut end = run_start + 4;
            while end < bytes.len() && bytes[end] == c && end - run_start < usize::from(MAX_RUN) {
                end += 1;
            }
            self.write_literal(&bytes[literal..run_start])?;
            self.rle_char = c;
            // at most MAX_RUN
            self.rle_repeat = (end - run_start) as u8;
            if end == bytes.len() {
                return Ok(());
            }
            self.end_run()?;
            literal = end;
            i = end;
        }
        // No run of four is left: the last (of one to three) stays pending.
        let last = bytes[bytes.len() - 1];
        let mut tail = bytes.len() - 1;
        while tail > literal && bytes[tail - 1] == last {
            tail -= 1;
        }
        self.write_literal(&bytes[literal..tail])?;
        self.rle_char = last;
        // at most 3
        self.rle_repeat = (bytes.len() - tail) as u8;
        Ok(())
    }

    /// gdbvisor patch: `span` unencoded, in one piece.
    fn write_literal(&mut self, span: &[u8]) -> Result<(), Error<C::Error>> {
        #[cfg(feature = "trace-pkt")]
        if self.trace {
            for &b in span {
                self.inner_write(b)?;
            }
            return Ok(());
        }
        if span.is_empty() {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            self.stage(b'$')?;
        }
        self.checksum = span.iter().fold(self.checksum, |a, &b| a.wrapping_add(b));
        if span.len() >= STAGE {
            self.hand_on_staged()?;
            return self.inner.write_all(span).map_err(Error);
        }
        let room = STAGE - self.staged_len;
        let (now, later) = span.split_at(span.len().min(room));
        self.staged[self.staged_len..][..now.len()].copy_from_slice(now);
        self.staged_len += now.len();
        if !later.is_empty() {
            self.hand_on_staged()?;
            self.staged[..later.len()].copy_from_slice(later);
            self.staged_len = later.len();
        }
        Ok(())
    }

    /// Write an entire string over the connection.
    pub fn write_str(&mut self, s: &str) -> Result<(), Error<C::Error>> {
        self.write_many(s.as_bytes())
    }

    /// Write a single byte as a hex string (two ascii chars)
    #[inline]
    fn write_hex(&mut self, byte: u8) -> Result<(), Error<C::Error>> {
        // gdbvisor patch: a table look-up, no branch per digit.
        self.write(HEX_DIGITS[usize::from(byte >> 4)])?;
        self.write(HEX_DIGITS[usize::from(byte & 0x0f)])
    }

    /// Write a byte-buffer as a hex string (i.e: two ascii chars / byte).
    pub fn write_hex_buf(&mut self, data: &[u8]) -> Result<(), Error<C::Error>> {
        // gdbvisor patch: digits made in bulk and written by `write_many`, not byte by byte
        // through `write` (~8 ns a byte, most of what a large `m` reply cost).
        let mut hex = [0u8; 2 * HEX_CHUNK];
        for chunk in data.chunks(HEX_CHUNK) {
            for (digits, &b) in hex.chunks_exact_mut(2).zip(chunk) {
                digits[0] = HEX_DIGITS[usize::from(b >> 4)];
                digits[1] = HEX_DIGITS[usize::from(b & 0x0f)];
            }
            self.write_many(&hex[..2 * chunk.len()])?;
        }
        Ok(())
    }

    /// Write data using the binary protocol.
    pub fn write_binary(&mut self, data: &[u8]) -> Result<(), Error<C::Error>> {
        for &b in data.iter() {
            match b {
                b'#' | b'$' | b'}' | b'*' => {
                    self.write(b'}')?;
                    self.write(b ^ 0x20)?
                }
                _ => self.write(b)?,
            }
        }
        Ok(())
    }

    /// Write a number as a big-endian hex string using the most compact
    /// representation possible (i.e: trimming leading zeros).
    pub fn write_num<D: BeBytes + PrimInt>(&mut self, digit: D) -> Result<(), Error<C::Error>> {
        if digit.is_zero() {
            return self.write_hex(0);
        }

        let mut buf = [0; 16];
        // infallible (unless digit is a >128 bit number)
        let len = digit.to_be_bytes(&mut buf).unwrap();
        let buf = &buf[..len];
        for b in buf.iter().copied().skip_while(|&b| b == 0) {
            self.write_hex(b)?
        }
        Ok(())
    }

    /// Write a number as a decimal string, converting every digit to an ascii
    /// char.
    pub fn write_dec<D: PrimInt + CheckedRem>(
        &mut self,
        mut digit: D,
    ) -> Result<(), Error<C::Error>> {
        if digit.is_zero() {
            return self.write(b'0');
        }

        let one: D = one();
        let ten = (one << 3) + (one << 1);
        let mut d = digit;
        let mut pow_10 = one;
        // Get the number of digits in digit
        while d >= ten {
            d = d / ten;
            pow_10 = pow_10 * ten;
        }

        // Write every digit from left to right as an ascii char
        while !pow_10.is_zero() {
            let mut byte = 0;
            // We have a single digit here which uses up to 4 bit
            for i in 0..4 {
                if !((digit / pow_10) & (one << i)).is_zero() {
                    byte += 1 << i;
                }
            }
            self.write(b'0' + byte)?;
            digit = digit % pow_10;
            pow_10 = pow_10 / ten;
        }
        Ok(())
    }

    #[inline]
    fn write_specific_id_kind(&mut self, tid: SpecificIdKind) -> Result<(), Error<C::Error>> {
        match tid {
            SpecificIdKind::All => self.write_str("-1")?,
            SpecificIdKind::WithId(id) => self.write_num(id.get())?,
        };
        Ok(())
    }

    pub fn write_specific_thread_id(
        &mut self,
        tid: SpecificThreadId,
    ) -> Result<(), Error<C::Error>> {
        if let Some(pid) = tid.pid {
            self.write_str("p")?;
            self.write_specific_id_kind(pid)?;
            self.write_str(".")?;
        }
        self.write_specific_id_kind(tid.tid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A mock connection that captures all written bytes
    struct MockConnection {
        data: Vec<u8>,
    }

    impl MockConnection {
        fn new() -> Self {
            Self { data: Vec::new() }
        }
    }

    impl Connection for MockConnection {
        type Error = ();

        fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
            self.data.push(byte);
            Ok(())
        }

        fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
            self.data.extend_from_slice(buf);
            Ok(())
        }

        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    /// Check that packet body (between '$' and '#') contains no '$' or '#'.
    fn assert_no_special_chars_in_body(data: &[u8]) {
        let hash_pos = data.iter().rposition(|&b| b == b'#').unwrap();
        for &byte in &data[1..hash_pos] {
            assert!(
                byte != b'$' && byte != b'#',
                "found {:?} in packet body",
                byte as char
            );
        }
    }

    /// RLE must not produce '#' in packet body.
    #[test]
    fn rle_avoids_hash() {
        let mut conn = MockConnection::new();
        let mut writer = ResponseWriter::new(&mut conn, true);
        writer.write_str("0000000").unwrap();
        writer.flush().unwrap();
        assert_no_special_chars_in_body(&conn.data);
    }

    /// RLE must not produce '$' in packet body.
    #[test]
    fn rle_avoids_dollar() {
        let mut conn = MockConnection::new();
        let mut writer = ResponseWriter::new(&mut conn, true);
        writer.write_str("00000000").unwrap();
        writer.flush().unwrap();
        assert_no_special_chars_in_body(&conn.data);
    }

    /// Expands a packet's run-length encoding (`c*n`: `n - 29` more of `c`).
    fn expand(body: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'*' {
                let last = *out.last().unwrap();
                out.extend(core::iter::repeat(last).take(usize::from(body[i + 1] - 29)));
                i += 2;
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        out
    }

    /// gdbvisor patch: a reply longer than the staging buffer, with runs of every length
    /// across its boundaries, arrives whole, RLE-expands to the data and has the right
    /// checksum.
    #[test]
    fn long_hex_reply_survives_staging_and_rle() {
        let mut data = Vec::new();
        let mut seed = 0x1234_5678u32;
        while data.len() < 5000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let run = (seed >> 24) as usize % 120;
            data.extend(core::iter::repeat((seed >> 8) as u8).take(run));
        }
        // A pending run that goes on into the data.
        data[..3].fill(0);
        for rle in [false, true] {
            let mut conn = MockConnection::new();
            let mut writer = ResponseWriter::new(&mut conn, rle);
            writer.write_str("OK00").unwrap();
            writer.write_hex_buf(&data).unwrap();
            writer.flush().unwrap();
            let mut bytewise = MockConnection::new();
            let mut writer = ResponseWriter::new(&mut bytewise, rle);
            for &b in b"OK00" {
                writer.write(b).unwrap();
            }
            for &b in &data {
                writer.write_hex(b).unwrap();
            }
            writer.flush().unwrap();
            assert_eq!(conn.data, bytewise.data, "the same as byte by byte, rle {rle}");
            assert_no_special_chars_in_body(&conn.data);
            let hash = conn.data.iter().rposition(|&b| b == b'#').unwrap();
            let body = &conn.data[1..hash];
            let sum = body.iter().fold(0u8, |a, &b| a.wrapping_add(b));
            let sent = core::str::from_utf8(&conn.data[hash + 1..]).unwrap();
            assert_eq!(u8::from_str_radix(sent, 16).unwrap(), sum);
            let mut expected = b"OK00".to_vec();
            for b in &data {
                expected.extend_from_slice(alloc::format!("{b:02x}").as_bytes());
            }
            assert_eq!(expand(body), expected, "rle {rle}");
            assert!(!rle || body.len() < expected.len(), "runs are encoded");
        }
    }
}
