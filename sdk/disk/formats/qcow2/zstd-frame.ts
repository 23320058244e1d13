// Finds where one zstd frame ends. A qcow2 compressed cluster's byte span is rounded up to whole
// sectors and may hold the start of the next cluster's data, and Node's zstd decoder rejects
// bytes after a frame, so the reader cuts the span at the frame's end first.

// Ref: RFC 8878 §3.1.1 "Zstandard Frames": magic, frame header, data blocks, optional checksum.
const ZSTD_MAGIC = 0xfd2fb528;
const MAGIC_BYTES = 4;
const FRAME_HEADER_DESCRIPTOR_BYTES = 1;
const WINDOW_DESCRIPTOR_BYTES = 1;
// Ref: RFC 8878 §3.1.1.1.1: sizes selected by the descriptor's Dictionary_ID_Flag (bits 0-1)
// and Frame_Content_Size_Flag (bits 6-7); flag 0 means 1 byte of content size only for a
// single-segment frame.
const DICTIONARY_ID_BYTES = [0, 1, 2, 4] as const;
const CONTENT_SIZE_BYTES = [0, 2, 4, 8] as const;
const CONTENT_CHECKSUM_BYTES = 4;
// Ref: RFC 8878 §3.1.1.2: a 3-byte little-endian block header: bit 0 last block, bits 1-2 type,
// bits 3-23 size. An RLE block's content is one byte whatever its size says.
const BLOCK_HEADER_BYTES = 3;
const BLOCK_TYPE_RLE = 1;
const BLOCK_TYPE_RESERVED = 3;

/** Length of the zstd frame at the start of `data`, or -1 when there is no complete frame. */
export function zstdFrameLength(data: Buffer): number {
  if (data.length < MAGIC_BYTES + FRAME_HEADER_DESCRIPTOR_BYTES || data.readUInt32LE(0) !== ZSTD_MAGIC) return -1;
  const descriptor = data[MAGIC_BYTES] ?? 0;
  const singleSegment = ((descriptor >> 5) & 1) === 1;
  const contentSizeFlag = descriptor >> 6;
  let positionBytes = MAGIC_BYTES + FRAME_HEADER_DESCRIPTOR_BYTES;
  if (!singleSegment) positionBytes += WINDOW_DESCRIPTOR_BYTES;
  positionBytes += DICTIONARY_ID_BYTES[descriptor & 3] ?? 0;
  positionBytes += contentSizeFlag === 0 && singleSegment ? 1 : (CONTENT_SIZE_BYTES[contentSizeFlag] ?? 0);
  // Every block moves forward by at least its 3-byte header, so this ends within data.length/3 steps.
  for (;;) {
    if (positionBytes + BLOCK_HEADER_BYTES > data.length) return -1;
    const blockHeader = data.readUIntLE(positionBytes, BLOCK_HEADER_BYTES);
    positionBytes += BLOCK_HEADER_BYTES;
    const blockType = (blockHeader >> 1) & 3;
    if (blockType === BLOCK_TYPE_RESERVED) return -1;
    positionBytes += blockType === BLOCK_TYPE_RLE ? 1 : blockHeader >>> 3;
    if (positionBytes > data.length) return -1;
    if ((blockHeader & 1) === 1) break;
  }
  if (((descriptor >> 2) & 1) === 1) positionBytes += CONTENT_CHECKSUM_BYTES;
  return positionBytes > data.length ? -1 : positionBytes;
}
