import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FormatError, InvalidArgsError, isPortableError, PortableError } from "../../sdk/errors.ts";

describe("PortableError", () => {
  it("GIVEN a subclass error THEN it carries code, context, cause and its class name", () => {
    const cause = new Error("short read");
    const err = new FormatError("VHDX_BAT_OUT_OF_RANGE", "vhdx: BAT entry 812 points past end of file", {
      context: { entry: 812, offsetBytes: 0x3f000000 },
      cause,
    });
    assert.equal(err.code, "VHDX_BAT_OUT_OF_RANGE");
    assert.equal(err.name, "FormatError");
    assert.equal(err.context.entry, 812);
    assert.equal(err.cause, cause);
    assert.ok(err instanceof PortableError);
    assert.ok(err instanceof FormatError);
    assert.equal(err instanceof InvalidArgsError, false);
  });

  it("GIVEN an error branded by another copy of the library THEN isPortableError and instanceof accept it", () => {
    const foreign = Object.assign(new Error("from another copy"), { code: "X" });
    Object.defineProperty(foreign, Symbol.for("portable-workload.PortableError"), { value: true });
    assert.equal(isPortableError(foreign), true);
    assert.ok(foreign instanceof PortableError);
    assert.equal(isPortableError(new Error("plain")), false);
    assert.equal(new Error("plain") instanceof PortableError, false);
  });
});
