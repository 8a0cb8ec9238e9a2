// Lint configuration of the browser modules (and their Node tests in tests/web).
// Run from the repository root: clutchcall/web/node_modules/.bin/eslint -c clutchcall/web/eslint.config.js
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["**/node_modules/**"] },
  js.configs.recommended,
  {
    files: ["clutchcall/web/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    files: ["clutchcall/web/worklets.js"],
    languageOptions: { globals: { ...globals.audioWorklet } },
  },
  {
    files: ["clutchcall/web/eslint.config.js"],
    languageOptions: { globals: { ...globals.node } },
  },
  {
    files: ["tests/web/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
  {
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
    },
  },
];
