// Unit tests of the page's formatting helpers: file sizes, one-line previews of messages with
// attachments, and what the composer says about a refused upload.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConfabError } from "../../clients/js/src/confab.js";
import { uploadErrorText } from "../public/uploads.js";
import { humanSize, messagePreview } from "../public/util.js";

test("sizes read like a file manager's", () => {
  assert.equal(humanSize(0), "0 B");
  assert.equal(humanSize(999), "999 B");
  assert.equal(humanSize(1234), "1.2 kB");
  assert.equal(humanSize(48_213), "48 kB");
  assert.equal(humanSize(999_600), "1.0 MB");
  assert.equal(humanSize(1_200_000), "1.2 MB");
  assert.equal(humanSize(5_600_000), "5.6 MB");
  assert.equal(humanSize(104_857_600), "105 MB");
});

test("a message without text is previewed by its files", () => {
  assert.equal(messagePreview({ body: "hello", attachments: [{ name: "a.png" }] }), "hello");
  assert.equal(messagePreview({ body: "", attachments: [{ name: "a.png" }, { name: "b.pdf" }] }), "📎 a.png, b.pdf");
  assert.equal(messagePreview({ body: "" }), "");
});

test("a refused upload is explained with the server's reason", () => {
  assert.equal(
    uploadErrorText(new ConfabError("too_large", "the file is larger than 104857600 bytes", 413)),
    "Too large: the file is larger than 105 MB.",
  );
  assert.equal(
    uploadErrorText(new ConfabError("unsupported_media_type", "executable files (text/x-shellscript) are not allowed", 415)),
    "Not accepted: executable files (text/x-shellscript) are not allowed.",
  );
  assert.equal(uploadErrorText(new ConfabError("network", "the server cannot be reached", 0)), "The server cannot be reached.");
});
