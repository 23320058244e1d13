// AWS: EBS direct-API snapshot sink and source, AMI registration, the workload's instance
// (machine driver) and point-in-time reads of its volumes. One module per verb,
// each taking its client; see DESIGN.md "clouds/".
export * from "./call.ts";
export * from "./clients.ts";
export * from "./complete-snapshot.ts";
export * from "./ebs-block.ts";
export * from "./get-snapshot-block.ts";
export * from "./instances.ts";
export * from "./list-blocks.ts";
export * from "./devices.ts";
export * from "./live-volume.ts";
export * from "./machine-driver.ts";
export * from "./open-url.ts";
export * from "./put-snapshot-block.ts";
export * from "./register-image.ts";
export * from "./snapshot-sink.ts";
export * from "./snapshot-source.ts";
export * from "./start-snapshot.ts";
export * from "./url.ts";
