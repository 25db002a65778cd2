// Lints the browser's ES modules (web/js, embedded in the binary as they are, no build step)
// and this suite. Run from the repository root by tests/run.sh:
//   tests/browser/node_modules/.bin/eslint --config tests/browser/eslint.config.mjs web/js tests/browser
// `no-undef` is the point: a name lost in a merge (an import dropped) is otherwise found only when
// a page breaks.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["**/node_modules/**", "web/vendor/**"] },
  js.configs.recommended,
  {
    // `catch (_)` and `(_, i) =>`: the underscore says "deliberately unused".
    rules: { "no-unused-vars": ["error", { argsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_" }] },
  },
  {
    files: ["web/js/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      // xterm.js and its fit addon are classic scripts that define these globals.
      globals: { ...globals.browser, Terminal: "readonly", FitAddon: "readonly" },
    },
  },
  {
    files: ["tests/browser/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node, ...globals.browser } },
  },
];
