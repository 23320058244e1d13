// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
//
// How to reach a vCenter: what a machine request and a disk placement carry to the vSphere
// driver (clouds/vsphere/disk-url.ts connects with it and reads the password from the environment).

export interface VsphereConnection {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  readonly caPem?: string;
  readonly thumbprint?: string;
  readonly insecure?: boolean;
  /** The environment variable the password was read from (kept so a later run reads it again). */
  readonly passwordEnv?: string;
}

/** A connection as it may be stored or passed around: everything but the password. */
export type VsphereSettings = Omit<VsphereConnection, "password">;
