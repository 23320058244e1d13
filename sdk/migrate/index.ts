// Migration: plan (bytes, time, downtime), the warm replication loop, cutover and rollback.
export * from "./migrate.ts";
export * from "./plan.ts";
export * from "./types.ts";
