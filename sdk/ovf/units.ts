// DMTF programmatic units (DSP0004 Annex C.1, as used by rasd:AllocationUnits and
// ovf:capacityAllocationUnits): "byte * 2^20", "byte*10^6", and the older spellings producers
// still write ("MegaBytes", "MB").

const NAMED: Readonly<Record<string, number>> = {
  byte: 1,
  bytes: 1,
  kilobytes: 2 ** 10,
  kb: 2 ** 10,
  megabytes: 2 ** 20,
  mb: 2 ** 20,
  gigabytes: 2 ** 30,
  gb: 2 ** 30,
  terabytes: 2 ** 40,
  tb: 2 ** 40,
};

/** Bytes per unit, or undefined for units that are not byte-based. A missing unit means bytes. */
export function bytesPerUnit(units: string | undefined): number | undefined {
  if (units === undefined || units.trim() === "") return 1;
  const compact = units.replace(/\s+/g, "").toLowerCase();
  const named = NAMED[compact];
  if (named !== undefined) return named;
  const match = /^bytes?(?:\*(\d+)\^(\d+))?(?:\*(\d+)\^(\d+))?$/.exec(compact);
  if (match === null) return undefined;
  let factor = 1;
  for (const [base, exponent] of [
    [match[1], match[2]],
    [match[3], match[4]],
  ]) {
    if (base !== undefined && exponent !== undefined) factor *= Number(base) ** Number(exponent);
  }
  return Number.isSafeInteger(factor) ? factor : undefined;
}

/** The DMTF spelling for a power of two, as VMware writes it: "byte * 2^20". */
export function unitsForPowerOfTwo(exponent: number): string {
  return exponent === 0 ? "byte" : `byte * 2^${exponent}`;
}
