//! Writes a 2-D float32 matrix as a NumPy `.npy` file (format version 1.0), which
//! `numpy.load` reads without any extra package.

use std::io::{self, Write};

/// Writes `values` (row-major, `rows x columns`) as a little-endian float32 `.npy`.
pub fn write_f32_matrix(out: &mut impl Write, values: &[f32], rows: usize, columns: usize) -> io::Result<()> {
    const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";
    const ALIGN: usize = 64;
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.div_ceil(ALIGN) * ALIGN - unpadded));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| io::Error::other("npy header too long"))?;
    out.write_all(MAGIC)?;
    out.write_all(&header_len.to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for value in values {
        out.write_all(&value.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_padded_to_64_bytes_and_data_follows() {
        let mut bytes = Vec::new();
        write_f32_matrix(&mut bytes, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert!(std::str::from_utf8(&bytes[10..10 + header_len]).unwrap().contains("'shape': (2, 3)"));
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(&bytes[10 + header_len..10 + header_len + 4], &1.0f32.to_le_bytes());
    }
}
