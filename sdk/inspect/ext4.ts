// A read-only ext2/ext3/ext4 reader over a Volume: superblock, group descriptors (32- and
// 64-bit), inodes, extent trees, legacy block maps, linear directories, symlinks and path
// resolution. Hand-written: no maintained JavaScript package reads ext4 without mounting, and
// the inspection must not mount or run tools on a guest disk. Every structure is checked
// against the filesystem before use, and every walk is bounded, so a hostile filesystem ends in
// a coded FormatError (INSPECT_EXT4_*) instead of a hang.
//
// Ref: Linux kernel Documentation/filesystems/ext4/ (super.rst, group_descr.rst, inodes.rst,
// ifork.rst for extent trees and block maps, directory.rst, dynamic.rst).
import type { Finding } from "./types.ts";
import { inspectError, readVolume, type Volume } from "./volume.ts";

const EXT4_SUPERBLOCK_OFFSET = 1024;
const EXT4_SUPERBLOCK_BYTES = 1024;
const EXT4_MAGIC = 0xef53;
/** Ref: super.rst: block size = 2^(10 + s_log_block_size); the kernel accepts 1 KiB..64 KiB. */
const EXT4_MAX_LOG_BLOCK_SIZE = 6;
export const EXT4_ROOT_INODE = 2;
/** Ref: super.rst: revision 0 has fixed 128-byte inodes. */
const EXT4_GOOD_OLD_INODE_BYTES = 128;
/** Ref: group_descr.rst: 32 bytes without the 64bit feature, s_desc_size (≥ 64) with it. */
const EXT4_DESC_BYTES_32 = 32;
const EXT4_MIN_DESC_BYTES_64 = 64;

// Ref: super.rst, s_feature_incompat.
const INCOMPAT_COMPRESSION = 0x1;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
// Ref: super.rst, s_feature_ro_compat.
const RO_COMPAT_SPARSE_SUPER = 0x1;

// Ref: inodes.rst, i_flags.
const INODE_FLAG_EXTENTS = 0x80000;
const INODE_FLAG_INLINE_DATA = 0x10000000;
/** Ref: inodes.rst: i_block is 60 bytes (15 × 4). */
const INODE_BLOCK_BYTES = 60;

// Ref: ifork.rst: extent tree header magic, 12-byte header and entries, depth at most 5.
const EXTENT_MAGIC = 0xf30a;
const EXTENT_ENTRY_BYTES = 12;
export const EXT4_MAX_EXTENT_DEPTH = 5;
/** ee_len above 32768 marks an uninitialized (preallocated) extent of ee_len − 32768 blocks. */
const EXTENT_UNINIT_LEN = 32768;
/** Legacy block maps: 12 direct pointers, then single, double and triple indirect. */
const DIRECT_BLOCKS = 12;

/** Linux MAXSYMLINKS: path resolution gives up after 40 symlinks. */
export const MAX_SYMLINK_FOLLOWS = 40;
/** Linux PATH_MAX: a symlink target is at most 4096 bytes. */
const MAX_SYMLINK_BYTES = 4096;
/**
 * Bounds one file's extent walk: a real 1 GiB file has a handful of extent nodes; a hostile
 * tree sharing children (a DAG) could otherwise make the walk exponential.
 */
export const MAX_EXTENT_NODES = 4096;
/** Bounds a directory: 64 MiB of directory blocks is millions of entries, far past any guest's /lib. */
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;
/** Entries kept per directory listing. */
export const MAX_DIRECTORY_ENTRIES = 200_000;
/** Path components handled while resolving one path, symlink expansions included. */
const MAX_PATH_STEPS = 4096;
/** Directory listings cached per reader, counted in entries; past this the cache starts over. */
const DIRECTORY_CACHE_ENTRIES = 500_000;

// Ref: inodes.rst, i_mode high bits.
const S_IFMT = 0xf000;
const S_IFDIR = 0x4000;
const S_IFREG = 0x8000;
const S_IFLNK = 0xa000;
// Ref: directory.rst, file_type in ext4_dir_entry_2.
const FT_REG = 1;
const FT_DIR = 2;
const FT_SYMLINK = 7;

export interface Ext4Superblock {
  readonly blockBytes: number;
  readonly blocksCount: number;
  readonly inodesCount: number;
  readonly blocksPerGroup: number;
  readonly inodesPerGroup: number;
  readonly firstDataBlock: number;
  readonly inodeBytes: number;
  readonly descBytes: number;
  readonly groupCount: number;
  readonly featureIncompat: number;
  readonly featureRoCompat: number;
  readonly firstMetaBg: number;
}

export interface Ext4Inode {
  readonly ino: number;
  readonly mode: number;
  readonly sizeBytes: number;
  readonly flags: number;
  readonly blocksLo: number;
  readonly fileAcl: number;
  /** The 60-byte i_block area: extent root, block map or inline data. */
  readonly block: Buffer;
}

export interface DirEntry {
  readonly name: string;
  readonly ino: number;
  readonly kind: "file" | "dir" | "symlink" | "other" | "unknown";
}

interface Run {
  readonly logical: number;
  readonly physical: number;
  readonly length: number;
}

function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}
function isSymlink(mode: number): boolean {
  return (mode & S_IFMT) === S_IFLNK;
}

/** Ref: super.rst, sparse_super: backups in group 0, 1 and powers of 3, 5 and 7. */
function groupHasSuperblock(group: number, sparse: boolean): boolean {
  if (!sparse || group <= 1) return true;
  for (const base of [3, 5, 7]) {
    let n = base;
    while (n < group) n *= base;
    if (n === group) return true;
  }
  return false;
}

/** An ext2/3/4 filesystem opened read-only. */
export class Ext4Reader {
  readonly volume: Volume;
  readonly sb: Ext4Superblock;
  /** Non-fatal observations (journal needs recovery). */
  readonly findings: Finding[] = [];
  private readonly where: string;
  private readonly descBlocks = new Map<number, Buffer>();
  private readonly dirCache = new Map<number, DirEntry[]>();
  private dirCacheEntries = 0;

  private constructor(volume: Volume, sb: Ext4Superblock) {
    this.volume = volume;
    this.sb = sb;
    this.where = `${volume.name}: ext4`;
  }

  static async open(volume: Volume): Promise<Ext4Reader> {
    const where = `${volume.name}: ext4`;
    const raw = await readVolume(volume, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_BYTES, "ext4 superblock", "INSPECT_EXT4_SUPERBLOCK");
    if (raw.readUInt16LE(0x38) !== EXT4_MAGIC) throw inspectError("INSPECT_EXT4_SUPERBLOCK", where, "no ext2/3/4 magic 0xEF53 in the superblock");
    const logBlock = raw.readUInt32LE(0x18);
    if (logBlock > EXT4_MAX_LOG_BLOCK_SIZE) throw inspectError("INSPECT_EXT4_SUPERBLOCK", where, `s_log_block_size ${logBlock} means blocks above 64 KiB`, { logBlock });
    const blockBytes = 1024 << logBlock;
    const incompat = raw.readUInt32LE(0x60);
    const is64 = (incompat & INCOMPAT_64BIT) !== 0;
    const blocksCount = raw.readUInt32LE(0x04) + (is64 ? raw.readUInt32LE(0x150) * 2 ** 32 : 0);
    const inodesCount = raw.readUInt32LE(0x00);
    const firstDataBlock = raw.readUInt32LE(0x14);
    const blocksPerGroup = raw.readUInt32LE(0x20);
    const inodesPerGroup = raw.readUInt32LE(0x28);
    const revLevel = raw.readUInt32LE(0x4c);
    const inodeBytes = revLevel === 0 ? EXT4_GOOD_OLD_INODE_BYTES : raw.readUInt16LE(0x58);
    const descBytes = is64 ? raw.readUInt16LE(0xfe) : EXT4_DESC_BYTES_32;
    const bitsPerBlock = blockBytes * 8;
    const fail = (message: string, context: Readonly<Record<string, number>> = {}): never => {
      throw inspectError("INSPECT_EXT4_SUPERBLOCK", where, message, context);
    };
    if (blocksPerGroup === 0 || blocksPerGroup > bitsPerBlock) fail(`s_blocks_per_group ${blocksPerGroup} is outside 1..${bitsPerBlock}`, { blocksPerGroup });
    if (inodesPerGroup === 0 || inodesPerGroup > bitsPerBlock) fail(`s_inodes_per_group ${inodesPerGroup} is outside 1..${bitsPerBlock}`, { inodesPerGroup });
    if (inodeBytes < EXT4_GOOD_OLD_INODE_BYTES || inodeBytes > blockBytes || (inodeBytes & (inodeBytes - 1)) !== 0) fail(`inode size ${inodeBytes} is not a power of two in 128..${blockBytes}`, { inodeBytes });
    if (is64 && (descBytes < EXT4_MIN_DESC_BYTES_64 || descBytes > blockBytes || (descBytes & (descBytes - 1)) !== 0)) fail(`s_desc_size ${descBytes} is not a power of two in 64..${blockBytes}`, { descBytes });
    if (firstDataBlock !== (blockBytes === 1024 ? 1 : 0)) fail(`s_first_data_block ${firstDataBlock} does not match ${blockBytes}-byte blocks`, { firstDataBlock });
    if (blocksCount <= firstDataBlock) fail(`s_blocks_count ${blocksCount} leaves no data blocks`, { blocksCount });
    if (blocksCount * blockBytes > volume.lengthBytes) {
      throw inspectError("INSPECT_EXT4_SIZE", where, `the filesystem claims ${blocksCount} blocks of ${blockBytes} bytes (${blocksCount * blockBytes} bytes) but its volume holds ${volume.lengthBytes}`, {
        blocksCount,
        volumeBytes: volume.lengthBytes,
      });
    }
    const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
    if (inodesCount === 0 || inodesCount > groupCount * inodesPerGroup) fail(`s_inodes_count ${inodesCount} does not fit ${groupCount} groups of ${inodesPerGroup}`, { inodesCount });
    if ((incompat & INCOMPAT_COMPRESSION) !== 0 || (incompat & INCOMPAT_JOURNAL_DEV) !== 0) {
      throw inspectError("INSPECT_EXT4_UNSUPPORTED", where, `incompatible features 0x${incompat.toString(16)} (compression or an external journal device) cannot be read`, { incompat });
    }
    const sb: Ext4Superblock = {
      blockBytes,
      blocksCount,
      inodesCount,
      blocksPerGroup,
      inodesPerGroup,
      firstDataBlock,
      inodeBytes,
      descBytes,
      groupCount,
      featureIncompat: incompat,
      featureRoCompat: raw.readUInt32LE(0x64),
      firstMetaBg: raw.readUInt32LE(0x104),
    };
    const reader = new Ext4Reader(volume, sb);
    if ((incompat & INCOMPAT_RECOVER) !== 0) {
      reader.findings.push({
        severity: "warning",
        code: "INSPECT_EXT4_NEEDS_RECOVERY",
        message: "the ext4 journal holds transactions not yet replayed (the guest was not shut down cleanly); recent changes may be missing from what was read",
        evidencePath: `${volume.name}:superblock`,
        fixHint: "shut the source guest down cleanly before the final migration pass",
      });
    }
    return reader;
  }

  private fail(code: string, message: string, context: Readonly<Record<string, number | string>> = {}): never {
    throw inspectError(code, this.where, message, context);
  }

  private async readBlock(block: number, what: string): Promise<Buffer> {
    if (!Number.isSafeInteger(block) || block < this.sb.firstDataBlock || block >= this.sb.blocksCount) {
      this.fail("INSPECT_EXT4_BLOCK_RANGE", `${what} points at block ${block}, outside ${this.sb.firstDataBlock}..${this.sb.blocksCount - 1}`, { block });
    }
    return readVolume(this.volume, block * this.sb.blockBytes, this.sb.blockBytes, what, "INSPECT_EXT4_BLOCK_RANGE");
  }

  /** The block holding group descriptor block `index`. Ref: super.rst (meta_bg) and group_descr.rst. */
  private descriptorBlockNumber(index: number): number {
    const { sb } = this;
    if ((sb.featureIncompat & INCOMPAT_META_BG) === 0 || index < sb.firstMetaBg) return sb.firstDataBlock + 1 + index;
    const perBlock = sb.blockBytes / sb.descBytes;
    const group = index * perBlock;
    const sparse = (sb.featureRoCompat & RO_COMPAT_SPARSE_SUPER) !== 0;
    return sb.firstDataBlock + group * sb.blocksPerGroup + (groupHasSuperblock(group, sparse) ? 1 : 0);
  }

  private async inodeTableBlock(group: number): Promise<number> {
    const perBlock = this.sb.blockBytes / this.sb.descBytes;
    const index = Math.floor(group / perBlock);
    let block = this.descBlocks.get(index);
    if (block === undefined) {
      block = await this.readBlock(this.descriptorBlockNumber(index), `group descriptor block ${index}`);
      this.descBlocks.set(index, block);
    }
    const o = (group % perBlock) * this.sb.descBytes;
    // Ref: group_descr.rst: bg_inode_table_lo at 0x8, bg_inode_table_hi at 0x28 (64-bit descriptors).
    const lo = block.readUInt32LE(o + 0x8);
    const hi = this.sb.descBytes >= EXT4_MIN_DESC_BYTES_64 ? block.readUInt32LE(o + 0x28) : 0;
    return lo + hi * 2 ** 32;
  }

  /** Where inode `ino` lives, in bytes from the start of the volume (tests damage it there). */
  async inodeOffsetBytes(ino: number): Promise<number> {
    const { sb } = this;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) this.fail("INSPECT_EXT4_BAD_INODE", `inode ${ino} is outside 1..${sb.inodesCount}`, { ino });
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const table = await this.inodeTableBlock(group);
    return table * sb.blockBytes + ((ino - 1) % sb.inodesPerGroup) * sb.inodeBytes;
  }

  async readInode(ino: number): Promise<Ext4Inode> {
    const { sb } = this;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) this.fail("INSPECT_EXT4_BAD_INODE", `inode ${ino} is outside 1..${sb.inodesCount}`, { ino });
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const table = await this.inodeTableBlock(group);
    const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeBytes) / sb.blockBytes);
    if (table < sb.firstDataBlock || table + tableBlocks > sb.blocksCount) {
      this.fail("INSPECT_EXT4_BLOCK_RANGE", `group ${group}'s inode table at block ${table} (+${tableBlocks}) lies outside the filesystem`, { group, table });
    }
    const raw = await readVolume(this.volume, table * sb.blockBytes + index * sb.inodeBytes, EXT4_GOOD_OLD_INODE_BYTES, `inode ${ino}`);
    const mode = raw.readUInt16LE(0x0);
    const sizeBytes = raw.readUInt32LE(0x4) + raw.readUInt32LE(0x6c) * 2 ** 32;
    if (!Number.isSafeInteger(sizeBytes)) this.fail("INSPECT_EXT4_BAD_INODE", `inode ${ino} size exceeds 2^53`, { ino });
    return { ino, mode, sizeBytes, flags: raw.readUInt32LE(0x20), blocksLo: raw.readUInt32LE(0x1c), fileAcl: raw.readUInt32LE(0x68), block: Buffer.from(raw.subarray(0x28, 0x28 + INODE_BLOCK_BYTES)) };
  }

  /** Maps logical blocks [0, blockCount) of an inode to physical runs; holes are left out. */
  private async mapBlocks(inode: Ext4Inode, blockCount: number): Promise<Run[]> {
    if ((inode.flags & INODE_FLAG_EXTENTS) !== 0) return this.mapExtents(inode, blockCount);
    return this.mapIndirect(inode, blockCount);
  }

  private checkExtentHeader(node: Buffer, ino: number, capacityBytes: number, expectedDepth: number | undefined, at: string): { entries: number; depth: number } {
    if (node.readUInt16LE(0) !== EXTENT_MAGIC) this.fail("INSPECT_EXT4_EXTENT_HEADER", `inode ${ino}: ${at} has no extent magic 0xF30A`, { ino });
    const entries = node.readUInt16LE(2);
    const max = node.readUInt16LE(4);
    const depth = node.readUInt16LE(6);
    const capacity = Math.floor((capacityBytes - EXTENT_ENTRY_BYTES) / EXTENT_ENTRY_BYTES);
    if (max > capacity || entries > max) this.fail("INSPECT_EXT4_EXTENT_HEADER", `inode ${ino}: ${at} claims ${entries} of ${max} entries, room for ${capacity}`, { ino, entries, max });
    if (depth > EXT4_MAX_EXTENT_DEPTH) this.fail("INSPECT_EXT4_EXTENT_DEPTH", `inode ${ino}: ${at} has depth ${depth} (limit ${EXT4_MAX_EXTENT_DEPTH})`, { ino, depth });
    if (expectedDepth !== undefined && depth !== expectedDepth) this.fail("INSPECT_EXT4_EXTENT_DEPTH", `inode ${ino}: ${at} has depth ${depth}, its parent expects ${expectedDepth}`, { ino, depth });
    return { entries, depth };
  }

  /**
   * Walks the extent tree. Each child's depth must be its parent's minus one, so the walk ends;
   * a node block seen twice is a loop (INSPECT_EXT4_EXTENT_LOOP), and MAX_EXTENT_NODES bounds
   * trees that share children.
   */
  private async mapExtents(inode: Ext4Inode, blockCount: number): Promise<Run[]> {
    const runs: Run[] = [];
    const visited = new Set<number>();
    let nodes = 0;
    let lastEnd = 0;
    const walk = async (node: Buffer, capacityBytes: number, expectedDepth: number | undefined, at: string): Promise<void> => {
      if (++nodes > MAX_EXTENT_NODES) this.fail("INSPECT_EXT4_EXTENT_LOOP", `inode ${inode.ino}: extent tree has more than ${MAX_EXTENT_NODES} nodes`, { ino: inode.ino });
      const { entries, depth } = this.checkExtentHeader(node, inode.ino, capacityBytes, expectedDepth, at);
      for (let i = 0; i < entries; i++) {
        const o = EXTENT_ENTRY_BYTES * (i + 1);
        const logical = node.readUInt32LE(o);
        if (logical >= blockCount) break;
        if (depth === 0) {
          let length = node.readUInt16LE(o + 4);
          const uninit = length > EXTENT_UNINIT_LEN;
          if (uninit) length -= EXTENT_UNINIT_LEN;
          const physical = node.readUInt16LE(o + 6) * 2 ** 32 + node.readUInt32LE(o + 8);
          if (logical < lastEnd) this.fail("INSPECT_EXT4_EXTENT_ORDER", `inode ${inode.ino}: extent at logical block ${logical} overlaps or precedes the one before`, { ino: inode.ino, logical });
          if (length === 0 || physical < this.sb.firstDataBlock || physical + length > this.sb.blocksCount) {
            this.fail("INSPECT_EXT4_EXTENT_RANGE", `inode ${inode.ino}: extent ${physical}+${length} lies outside the filesystem (${this.sb.blocksCount} blocks)`, { ino: inode.ino, physical, length });
          }
          lastEnd = logical + length;
          // Uninitialized extents read as zeros, like holes.
          if (!uninit) runs.push({ logical, physical, length });
        } else {
          const child = node.readUInt16LE(o + 8) * 2 ** 32 + node.readUInt32LE(o + 4);
          if (visited.has(child)) this.fail("INSPECT_EXT4_EXTENT_LOOP", `inode ${inode.ino}: extent node block ${child} is reached twice`, { ino: inode.ino, block: child });
          visited.add(child);
          const childNode = await this.readBlock(child, `inode ${inode.ino} extent node`);
          await walk(childNode, this.sb.blockBytes, depth - 1, `extent node at block ${child}`);
        }
      }
    };
    await walk(inode.block, INODE_BLOCK_BYTES, undefined, "the extent root");
    return runs;
  }

  /** Legacy ext2/3 block maps: direct, single, double and triple indirect blocks. */
  private async mapIndirect(inode: Ext4Inode, blockCount: number): Promise<Run[]> {
    const perBlock = this.sb.blockBytes / 4;
    const runs: Run[] = [];
    const push = (logical: number, physical: number): void => {
      if (physical === 0) return;
      if (physical < this.sb.firstDataBlock || physical >= this.sb.blocksCount) this.fail("INSPECT_EXT4_BLOCK_RANGE", `inode ${inode.ino}: block map entry ${logical} points at block ${physical}`, { ino: inode.ino, physical });
      const last = runs.at(-1);
      if (last !== undefined && last.logical + last.length === logical && last.physical + last.length === physical) runs[runs.length - 1] = { ...last, length: last.length + 1 };
      else runs.push({ logical, physical, length: 1 });
    };
    for (let i = 0; i < Math.min(DIRECT_BLOCKS, blockCount); i++) push(i, inode.block.readUInt32LE(i * 4));
    const walk = async (pointer: number, level: number, firstLogical: number): Promise<void> => {
      if (pointer === 0 || firstLogical >= blockCount) return;
      const table = await this.readBlock(pointer, `inode ${inode.ino} indirect block`);
      const span = perBlock ** (level - 1);
      for (let i = 0; i < perBlock; i++) {
        const logical = firstLogical + i * span;
        if (logical >= blockCount) break;
        const p = table.readUInt32LE(i * 4);
        if (level === 1) push(logical, p);
        else await walk(p, level - 1, logical);
      }
    };
    let first = DIRECT_BLOCKS;
    for (let level = 1; level <= 3; level++) {
      await walk(inode.block.readUInt32LE((DIRECT_BLOCKS + level - 1) * 4), level, first);
      first += perBlock ** level;
    }
    return runs;
  }

  /** Reads a whole file's bytes (holes as zeros); `maxBytes` bounds memory. */
  async readInodeData(inode: Ext4Inode, maxBytes: number): Promise<Buffer> {
    if (inode.sizeBytes > maxBytes) this.fail("INSPECT_EXT4_FILE_TOO_LARGE", `inode ${inode.ino} holds ${inode.sizeBytes} bytes, more than the ${maxBytes} read here`, { ino: inode.ino });
    if ((inode.flags & INODE_FLAG_INLINE_DATA) !== 0) {
      // Ref: inline_data.rst: the first 60 bytes live in i_block, the rest in an xattr we do not read.
      if (inode.sizeBytes > INODE_BLOCK_BYTES) this.fail("INSPECT_EXT4_UNSUPPORTED", `inode ${inode.ino} keeps ${inode.sizeBytes} bytes inline, past i_block`, { ino: inode.ino });
      return Buffer.from(inode.block.subarray(0, inode.sizeBytes));
    }
    const bs = this.sb.blockBytes;
    const blockCount = Math.ceil(inode.sizeBytes / bs);
    const out = Buffer.alloc(inode.sizeBytes);
    for (const run of await this.mapBlocks(inode, blockCount)) {
      const length = Math.min(run.length, blockCount - run.logical);
      for (let i = 0; i < length; i++) {
        const data = await this.readBlock(run.physical + i, `inode ${inode.ino} data`);
        data.copy(out, (run.logical + i) * bs, 0, Math.min(bs, inode.sizeBytes - (run.logical + i) * bs));
      }
    }
    return out;
  }

  /** Lists a directory linearly (an htree's index blocks read as empty entries). */
  async listDirInode(inode: Ext4Inode): Promise<DirEntry[]> {
    const cached = this.dirCache.get(inode.ino);
    if (cached !== undefined) return cached;
    if (!isDir(inode.mode)) this.fail("INSPECT_EXT4_NOT_DIRECTORY", `inode ${inode.ino} is not a directory`, { ino: inode.ino });
    if ((inode.flags & INODE_FLAG_INLINE_DATA) !== 0) this.fail("INSPECT_EXT4_UNSUPPORTED", `directory inode ${inode.ino} keeps its entries inline`, { ino: inode.ino });
    if (inode.sizeBytes > MAX_DIRECTORY_BYTES) this.fail("INSPECT_EXT4_DIRECTORY_TOO_LARGE", `directory inode ${inode.ino} is ${inode.sizeBytes} bytes (limit ${MAX_DIRECTORY_BYTES})`, { ino: inode.ino });
    const bs = this.sb.blockBytes;
    const blockCount = Math.ceil(inode.sizeBytes / bs);
    const filetype = (this.sb.featureIncompat & INCOMPAT_FILETYPE) !== 0;
    const entries: DirEntry[] = [];
    for (const run of await this.mapBlocks(inode, blockCount)) {
      for (let i = 0; i < Math.min(run.length, blockCount - run.logical); i++) {
        const block = await this.readBlock(run.physical + i, `directory inode ${inode.ino} block ${run.logical + i}`);
        this.parseDirBlock(block, inode.ino, run.logical + i, filetype, entries);
      }
    }
    if (this.dirCacheEntries + entries.length > DIRECTORY_CACHE_ENTRIES) {
      this.dirCache.clear();
      this.dirCacheEntries = 0;
    }
    this.dirCache.set(inode.ino, entries);
    this.dirCacheEntries += entries.length;
    return entries;
  }

  /** Ref: directory.rst, ext4_dir_entry_2: inode u32, rec_len u16, name_len u8, file_type u8, name. */
  private parseDirBlock(block: Buffer, ino: number, logical: number, filetype: boolean, entries: DirEntry[]): void {
    const bs = block.length;
    let pos = 0;
    while (pos + 8 <= bs) {
      const child = block.readUInt32LE(pos);
      let recLen = block.readUInt16LE(pos + 4);
      // Ref: directory.rst: with 64 KiB blocks a rec_len of 65535 or 0 means the whole block.
      if (bs >= 65536 && (recLen === 65535 || recLen === 0)) recLen = bs;
      const nameLen = filetype ? block.readUInt8(pos + 6) : block.readUInt16LE(pos + 6);
      if (recLen < 8 || recLen % 4 !== 0 || pos + recLen > bs || 8 + nameLen > recLen) {
        this.fail("INSPECT_EXT4_DIRENT", `directory inode ${ino} block ${logical}: entry at byte ${pos} has rec_len ${recLen} and name_len ${nameLen}`, { ino, pos, recLen });
      }
      if (entries.length >= MAX_DIRECTORY_ENTRIES) this.fail("INSPECT_EXT4_DIRECTORY_TOO_LARGE", `directory inode ${ino} has more than ${MAX_DIRECTORY_ENTRIES} entries`, { ino });
      if (child !== 0 && nameLen > 0) {
        const type = filetype ? block.readUInt8(pos + 7) : 0;
        const kind = type === FT_REG ? "file" : type === FT_DIR ? "dir" : type === FT_SYMLINK ? "symlink" : type === 0 ? "unknown" : "other";
        entries.push({ name: block.toString("utf8", pos + 8, pos + 8 + nameLen), ino: child, kind });
      }
      pos += recLen;
    }
  }

  async readSymlink(inode: Ext4Inode): Promise<string> {
    if (!isSymlink(inode.mode)) this.fail("INSPECT_EXT4_NOT_SYMLINK", `inode ${inode.ino} is not a symlink`, { ino: inode.ino });
    if (inode.sizeBytes === 0 || inode.sizeBytes > MAX_SYMLINK_BYTES) this.fail("INSPECT_EXT4_SYMLINK", `symlink inode ${inode.ino} has length ${inode.sizeBytes} (1..${MAX_SYMLINK_BYTES})`, { ino: inode.ino });
    // Ref: inodes.rst: a "fast" symlink keeps its target in i_block when it is shorter than 60
    // bytes and the inode owns no data blocks (the kernel's ext4_inode_is_fast_symlink).
    const xattrSectors = inode.fileAcl !== 0 ? this.sb.blockBytes / 512 : 0;
    const fast = (inode.flags & INODE_FLAG_EXTENTS) === 0 && inode.sizeBytes < INODE_BLOCK_BYTES && inode.blocksLo - xattrSectors === 0;
    const data = fast || (inode.flags & INODE_FLAG_INLINE_DATA) !== 0 ? inode.block.subarray(0, inode.sizeBytes) : await this.readInodeData(inode, MAX_SYMLINK_BYTES);
    return data.toString("utf8");
  }

  /**
   * Resolves a path from the root, following symlinks (absolute ones against this
   * filesystem's root) up to MAX_SYMLINK_FOLLOWS. Returns undefined when a component is
   * missing; throws INSPECT_EXT4_SYMLINK_LOOP past the limit.
   */
  async resolve(path: string, options: { readonly followLast?: boolean } = {}): Promise<Ext4Inode | undefined> {
    const followLast = options.followLast ?? true;
    let pending = path.split("/").filter((c) => c !== "" && c !== ".");
    let dir = await this.readInode(EXT4_ROOT_INODE);
    let current = dir;
    let follows = 0;
    for (let steps = 0; pending.length > 0; steps++) {
      if (steps > MAX_PATH_STEPS) this.fail("INSPECT_EXT4_PATH_TOO_LONG", `resolving ${path} took more than ${MAX_PATH_STEPS} steps`, { path });
      const [name, ...rest] = pending;
      pending = rest;
      if (name === undefined) break;
      if (!isDir(dir.mode)) return undefined;
      const entry = (await this.listDirInode(dir)).find((e) => e.name === name);
      if (entry === undefined) return undefined;
      current = await this.readInode(entry.ino);
      if (isSymlink(current.mode) && (pending.length > 0 || followLast)) {
        if (++follows > MAX_SYMLINK_FOLLOWS) this.fail("INSPECT_EXT4_SYMLINK_LOOP", `resolving ${path} followed more than ${MAX_SYMLINK_FOLLOWS} symlinks`, { path });
        const target = await this.readSymlink(current);
        const parts = target.split("/").filter((c) => c !== "" && c !== ".");
        pending = [...parts, ...pending];
        if (target.startsWith("/")) dir = await this.readInode(EXT4_ROOT_INODE);
        current = dir;
        continue;
      }
      if (pending.length > 0) dir = current;
    }
    return current;
  }

  /** Reads a regular file by path; undefined when it does not exist or is not a file. */
  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    const inode = await this.resolve(path);
    if (inode === undefined || (inode.mode & S_IFMT) !== S_IFREG) return undefined;
    return this.readInodeData(inode, maxBytes);
  }

  /** Lists a directory by path; undefined when it does not exist or is not a directory. */
  async listDir(path: string): Promise<DirEntry[] | undefined> {
    const inode = await this.resolve(path);
    if (inode === undefined || !isDir(inode.mode)) return undefined;
    return this.listDirInode(inode);
  }

  /**
   * Lists regular files and symlinks below `path` (relative names), descending into real
   * directories only (not symlinked ones), at most `maxDepth` deep and `maxFiles` names in all.
   * `truncated` says a limit was hit.
   */
  async listTree(path: string, limits: { readonly maxFiles: number; readonly maxDepth: number }): Promise<{ files: string[]; truncated: boolean } | undefined> {
    const root = await this.resolve(path);
    if (root === undefined || !isDir(root.mode)) return undefined;
    const files: string[] = [];
    const seen = new Set<number>([root.ino]);
    let truncated = false;
    const walk = async (dir: Ext4Inode, prefix: string, depth: number): Promise<void> => {
      for (const entry of await this.listDirInode(dir)) {
        if (entry.name === "." || entry.name === "..") continue;
        if (files.length >= limits.maxFiles) {
          truncated = true;
          return;
        }
        let kind = entry.kind;
        let inode: Ext4Inode | undefined;
        if (kind === "unknown" || kind === "dir") {
          inode = await this.readInode(entry.ino);
          kind = isDir(inode.mode) ? "dir" : isSymlink(inode.mode) ? "symlink" : (inode.mode & S_IFMT) === S_IFREG ? "file" : "other";
        }
        const name = `${prefix}${entry.name}`;
        if (kind === "dir" && inode !== undefined) {
          // A directory reached twice is a hard-linked directory loop.
          if (seen.has(inode.ino)) this.fail("INSPECT_EXT4_DIRECTORY_LOOP", `directory ${path}/${name} (inode ${inode.ino}) is reached twice`, { ino: inode.ino });
          seen.add(inode.ino);
          if (depth >= limits.maxDepth) truncated = true;
          else await walk(inode, `${name}/`, depth + 1);
        } else if (kind === "file" || kind === "symlink") files.push(name);
      }
    };
    await walk(root, "", 1);
    return { files, truncated };
  }
}
