// assembly/abi.ts owns the layout shared by the core, the host and the tools:
// its tables checked against sources that do not come from it (Linux's
// numbers as Node knows them, the names the host reported before the table
// moved into abi.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { constants } from "node:os";
import { abi, errnoName, SysError } from "../dist/index.js";

test("every errno in abi.ts has Linux's number (Node's os.constants.errno)", () => {
  const errnos = Object.keys(abi).filter((k) => /^E[A-Z0-9]+$/.test(k));
  assert.ok(errnos.length >= 29, errnos.join(" "));
  for (const k of errnos) assert.is(abi[k], constants.errno[k], k);
});

test("errnoName names every errno the host reported by name, and numbers the rest", () => {
  const names = [
    "EPERM", "ENOENT", "EINTR", "EBADF", "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "EEXIST", "EXDEV", "ENOTDIR",
    "EISDIR", "EINVAL", "ENFILE", "EMFILE", "EPIPE", "ENAMETOOLONG", "ENOSYS", "ELOOP", "EPROTO", "EAFNOSUPPORT",
    "EADDRINUSE", "EADDRNOTAVAIL", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "ENOTCONN", "ETIMEDOUT", "ECONNREFUSED",
  ];
  for (const n of names) assert.is(errnoName(constants.errno[n]), n);
  assert.is(errnoName(constants.errno.E2BIG), `errno ${constants.errno.E2BIG}`);
  assert.is(new SysError("bind", constants.errno.EADDRINUSE).code, "EADDRINUSE");
});

test.run();
