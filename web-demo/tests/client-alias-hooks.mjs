// Module resolution hook of client-alias.mjs: public/confab.js is clients/js/src/confab.js.

const served = new URL("../public/confab.js", import.meta.url).href;
const source = new URL("../../clients/js/src/confab.js", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  const isRelative = specifier.startsWith("./") || specifier.startsWith("../");
  if (isRelative && context.parentURL && new URL(specifier, context.parentURL).href === served) {
    return nextResolve(source, context);
  }
  return nextResolve(specifier, context);
}
