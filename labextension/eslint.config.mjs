// Lint of the JupyterLab extension: typescript-eslint's recommended rules with type information,
// React's and the hooks' rules; formatting is prettier's (eslint-config-prettier turns off the
// rules that would disagree with it).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import react from 'eslint-plugin-react';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'node_modules/', '../jupyter_sandbox/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}', 'test/**/*.{ts,tsx}'],
    languageOptions: { globals: { ...globals.browser } },
    plugins: { react, 'react-hooks': reactHooks },
    settings: { react: { version: '18' } },
    rules: {
      ...react.configs.recommended.rules,
      ...reactHooks.configs.recommended.rules,
      // The new JSX transform is not used: React is imported where JSX is written.
      'react/react-in-jsx-scope': 'off',
      // Types, not runtime checks, describe the components' props.
      'react/prop-types': 'off',
      // Namespaces group a class's types, as JupyterLab's own code does.
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none' }],
      '@typescript-eslint/naming-convention': [
        'error',
        { selector: 'interface', format: ['PascalCase'], custom: { regex: '^I[A-Z]', match: true } }
      ],
      eqeqeq: ['error', 'smart'],
      'prefer-const': 'error',
      curly: ['error', 'all']
    }
  },
  {
    files: ['*.mjs', '*.js', '*.ts'],
    languageOptions: { globals: { ...globals.node } }
  },
  prettier
);
