// Lint: ESLint's and typescript-eslint's recommended rules, plus the house rules below.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/", "node_modules/", ".tools/"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", ignoreRestSiblings: true }],
      eqeqeq: ["error", "always"],
      "no-console": ["error", { allow: ["error", "warn"] }],
    },
  },
  {
    // Dynamic providers are serialized into the provider process, where they must
    // `require` what they use inside their methods (DESIGN.md, "Pulumi layer").
    files: ["components/providers/**", "tests/**"],
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
  {
    // DESIGN.md layers: sdk never imports Pulumi (tests/unit/layering.test.ts checks this too).
    files: ["sdk/**"],
    rules: { "no-restricted-imports": ["error", { patterns: ["@pulumi/*"] }] },
  },
  {
    // Command-line faces and scripts print to the terminal by design.
    files: ["sdk/cli/**", "scripts/**", "examples/**"],
    rules: { "no-console": "off" },
  },
);
