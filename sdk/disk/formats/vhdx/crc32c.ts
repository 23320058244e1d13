// CRC-32C (Castagnoli), the checksum of every VHDX header, region table and log entry
// ([MS-VHDX] §2.2.2.2, §2.2.3, §2.3.1.1). Hand-written with a 256-entry table: node:zlib only
// offers the IEEE polynomial, and the checksummed structures are small (4 KiB to 64 KiB, or a
// log entry), so one table lookup per byte is fast enough.

/** The Castagnoli polynomial 0x1EDC6F41, bit-reflected because the CRC runs LSB first. */
const CASTAGNOLI_REFLECTED = 0x82f63b78;

const TABLE = buildTable();

function buildTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ CASTAGNOLI_REFLECTED : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
}

/** Continues a CRC-32C over `data`; pass the previous result as `crc` to checksum in pieces. */
export function crc32c(data: Uint8Array, crc = 0): number {
  let state = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) state = TABLE[(state ^ data[i]!) & 0xff]! ^ (state >>> 8);
  return ~state >>> 0;
}

/**
 * CRC-32C of a structure whose own 4-byte checksum field lies inside it and counts as zero
 * ([MS-VHDX] §2.2.2.2: "the Checksum field is set to 0 when computing the checksum").
 */
export function crc32cWithZeroedField(data: Uint8Array, fieldOffset: number): number {
  let crc = crc32c(data.subarray(0, fieldOffset));
  crc = crc32c(new Uint8Array(4), crc);
  return crc32c(data.subarray(fieldOffset + 4), crc);
}
