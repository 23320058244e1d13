// CRC-64/NVME, the checksum Azure Storage takes in x-ms-content-crc64 for Put Page.
//
// Written by hand: the Azure SDK's own calculator lives in @azure/storage-common, a package we do
// not depend on directly, and the SDK only applies it through a "structured message" body that
// Azurite does not read. The service (and Azurite) compute this CRC of every Put Page anyway, so
// sending it costs the service nothing, unlike Content-MD5, which it must compute in addition.
//
// Parameters (the CRC catalogue's CRC-64/NVME): width 64, poly 0xad93d23594c93659 (reflected
// 0x9a6c9329ac4bc9b5), init and xorout all ones, reflected in and out, check ("123456789")
// 0xae8b14860a799888. The result is sent least significant byte first.
//
// Slicing-by-8 (Intel's "slicing-by-8" table method): eight tables let each step fold eight
// input bytes at once. The 64-bit state is kept as two 32-bit halves, because BigInt would box
// on every step.

const POLY_HI = 0x9a6c9329;
const POLY_LO = 0xac4bc9b5;

/** TABLE_HI[k * 256 + b], TABLE_LO[...]: the CRC of byte b followed by k zero bytes. */
const TABLE_HI = new Uint32Array(8 * 256);
const TABLE_LO = new Uint32Array(8 * 256);

for (let b = 0; b < 256; b++) {
  let hi = 0;
  let lo = b;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi = hi >>> 1;
    if (carry !== 0) {
      hi = (hi ^ POLY_HI) >>> 0;
      lo = (lo ^ POLY_LO) >>> 0;
    }
  }
  TABLE_HI[b] = hi;
  TABLE_LO[b] = lo;
}
for (let k = 1; k < 8; k++) {
  for (let b = 0; b < 256; b++) {
    const prevHi = TABLE_HI[(k - 1) * 256 + b]!;
    const prevLo = TABLE_LO[(k - 1) * 256 + b]!;
    const index = prevLo & 0xff;
    TABLE_HI[k * 256 + b] = (TABLE_HI[index]! ^ (prevHi >>> 8)) >>> 0;
    TABLE_LO[k * 256 + b] = (TABLE_LO[index]! ^ ((prevLo >>> 8) | ((prevHi & 0xff) << 24))) >>> 0;
  }
}

/** CRC-64/NVME of `data`, as the 8 little-endian bytes x-ms-content-crc64 carries. */
export function crc64Nvme(data: Uint8Array): Buffer {
  let hi = 0xffffffff;
  let lo = 0xffffffff;
  const words = Math.floor(data.length / 8) * 2;
  // Whole 8-byte steps through a 32-bit view (host order is little-endian on every platform
  // Node runs this on: x64, arm64); an unaligned input is copied once to get one.
  const aligned = data.byteOffset % 4 === 0 ? data : Uint8Array.from(data);
  const u32 = new Uint32Array(aligned.buffer, aligned.byteOffset, words);
  const th = TABLE_HI;
  const tl = TABLE_LO;
  for (let w = 0; w < words; w += 2) {
    const a = u32[w]! ^ lo;
    const b = u32[w + 1]! ^ hi;
    const i7 = 1792 + (a & 0xff), i6 = 1536 + ((a >>> 8) & 0xff), i5 = 1280 + ((a >>> 16) & 0xff), i4 = 1024 + (a >>> 24);
    const i3 = 768 + (b & 0xff), i2 = 512 + ((b >>> 8) & 0xff), i1 = 256 + ((b >>> 16) & 0xff), i0 = b >>> 24;
    hi = th[i7]! ^ th[i6]! ^ th[i5]! ^ th[i4]! ^ th[i3]! ^ th[i2]! ^ th[i1]! ^ th[i0]!;
    lo = tl[i7]! ^ tl[i6]! ^ tl[i5]! ^ tl[i4]! ^ tl[i3]! ^ tl[i2]! ^ tl[i1]! ^ tl[i0]!;
  }
  for (let i = words * 4; i < data.length; i++) {
    const index = (lo ^ data[i]!) & 0xff;
    lo = tl[index]! ^ ((lo >>> 8) | ((hi & 0xff) << 24));
    hi = th[index]! ^ (hi >>> 8);
  }
  const out = Buffer.alloc(8);
  out.writeUInt32LE((lo ^ 0xffffffff) >>> 0, 0);
  out.writeUInt32LE((hi ^ 0xffffffff) >>> 0, 4);
  return out;
}
