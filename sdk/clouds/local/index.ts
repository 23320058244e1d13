// The local target: a folder datastore, machines rendered for QEMU and libvirt, start/stop over
// QMP, and test boots; see DESIGN.md "clouds/" and docs/decisions/0005-local-target.md.
export * from "./accel.ts";
export * from "./datastore.ts";
export * from "./firmware.ts";
export * from "./libvirt-xml.ts";
export * from "./lifecycle.ts";
export * from "./machine.ts";
export * from "./qemu-args.ts";
export * from "./qmp.ts";
export * from "./test-boot.ts";
export * from "./point-in-time.ts";
