// Azure disk URLs as the CLI takes them: what counts as one, how it parses, and that a SAS
// never shows in a displayed name or an error.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pageBlobClientFor } from "../../../sdk/clouds/azure/open-url.ts";
import { displayName, isAzureDiskUrl, parseAzureDiskUrl } from "../../../sdk/clouds/azure/url.ts";

const SAS = "https://md-abc.z1.blob.storage.azure.net/xyz/abcd?sv=2018-03-28&sr=b&si=1&sig=c2VjcmV0%3D";

describe("azure disk URLs", () => {
  it("GIVEN azblob and SAS URLs WHEN classified THEN both are Azure and plain paths or other URLs are not", () => {
    assert.ok(isAzureDiskUrl("azblob://acct1/disks/a/b.vhd"));
    assert.ok(isAzureDiskUrl(SAS));
    assert.ok(!isAzureDiskUrl("/tmp/disk.vhd"));
    assert.ok(!isAzureDiskUrl("https://example.com/disk.vhd"));
    assert.ok(!isAzureDiskUrl("s3://bucket/key"));
  });

  it("GIVEN an azblob URL WHEN parsed THEN account, container and the full blob path come out", () => {
    assert.deepEqual(parseAzureDiskUrl("azblob://acct1/disks/vm%201/os.vhd"), {
      kind: "azblob", accountName: "acct1", containerName: "disks", blobName: "vm 1/os.vhd",
    });
    assert.deepEqual(parseAzureDiskUrl(SAS), { kind: "sas", url: SAS });
  });

  it("GIVEN an azdisk URL WHEN parsed THEN subscription, group, disk and creation settings come out; unknown settings are refused", () => {
    const url = "azdisk://00000000-1111-2222-3333-444444444444/rg1/os-disk?location=westeurope&osType=Linux";
    assert.ok(isAzureDiskUrl(url));
    assert.deepEqual(parseAzureDiskUrl(url), {
      kind: "azdisk", subscriptionId: "00000000-1111-2222-3333-444444444444", resourceGroupName: "rg1", diskName: "os-disk",
      settings: { location: "westeurope", osType: "Linux" },
    });
    assert.throws(() => parseAzureDiskUrl("azdisk://00000000-1111-2222-3333-444444444444/rg1/d?sig=x"), { code: "AZURE_BAD_URL" });
    assert.throws(() => parseAzureDiskUrl("azdisk://not-a-guid/rg1/d"), { code: "AZURE_BAD_URL" });
    assert.throws(() => parseAzureDiskUrl("azdisk://00000000-1111-2222-3333-444444444444/rg1"), { code: "AZURE_BAD_URL" });
  });

  it("GIVEN malformed azblob URLs WHEN parsed THEN AZURE_BAD_URL", () => {
    for (const bad of ["azblob://acct1/disks", "azblob://acct1/", "azblob://UPPER/disks/x", "azblob://acct1/disks/x?sig=abc", "https://h/x?a=1"]) {
      assert.throws(() => parseAzureDiskUrl(bad), { code: "AZURE_BAD_URL" }, bad);
    }
  });

  it("GIVEN a SAS URL WHEN displayed or refused THEN no token is shown", () => {
    assert.equal(displayName(SAS), "https://md-abc.z1.blob.storage.azure.net/xyz/abcd");
    assert.equal(displayName("/tmp/x.vhd"), "/tmp/x.vhd");
    assert.throws(() => parseAzureDiskUrl("azblob://acct1/disks/x?sig=secretvalue"), (err: Error) => !err.message.includes("secretvalue"));
  });

  it("GIVEN a connection string for another account WHEN a client is made THEN AZURE_ACCOUNT_MISMATCH", async () => {
    await assert.rejects(
      pageBlobClientFor(parseAzureDiskUrl("azblob://acct1/disks/x.vhd"), { AZURE_STORAGE_CONNECTION_STRING: "AccountName=other;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/other;" }),
      { code: "AZURE_ACCOUNT_MISMATCH" },
    );
    const client = await pageBlobClientFor(parseAzureDiskUrl("azblob://acct1/disks/d/x.vhd"), { AZURE_STORAGE_KEY: "a2V5", AZURE_STORAGE_BLOB_ENDPOINT: "http://127.0.0.1:9/acct1/" });
    assert.equal(client.url, "http://127.0.0.1:9/acct1/disks/d/x.vhd");
  });
});
