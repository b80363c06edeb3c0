// The pages import the client library as `./confab.js`, which the server serves from
// clients/js/src/ beside them. Under Node (the unit tests import the pages' modules), this
// resolves web-demo/public/confab.js to that same file: `node --import ./tests/client-alias.mjs`.

import { register } from "node:module";

register("./client-alias-hooks.mjs", import.meta.url);
