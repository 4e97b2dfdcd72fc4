// Lints the JavaScript that runs inside the addon (src/js/*.js, evaluated by the binding with
// include_str!): it has no type checker and no other test of its syntax than loading it.
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    files: ["src/js/**/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2022,
      // A script evaluated with napi_run_script: no module syntax, only the globals of Node.
      sourceType: "script",
      globals: { ...globals.node },
    },
    rules: {
      ...js.configs.recommended.rules,
      // The file is one expression whose value the binding keeps.
      "no-unused-expressions": "off",
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
      strict: ["error", "function"],
    },
  },
];
