/**
 * Draw a component again when the parts of the model it shows change (and only then).
 */
import * as React from 'react';

import { SandboxModel } from '../model';

export function useModel(model: SandboxModel, ...parts: SandboxModel.Part[]): void {
  const [, redraw] = React.useReducer((count: number) => count + 1, 0);
  const wanted = parts.join(' ');
  React.useEffect(() => {
    const names = new Set(wanted.split(' '));
    const onChange = (_: SandboxModel, part: SandboxModel.Part) => {
      if (names.has(part)) {
        redraw();
      }
    };
    model.changed.connect(onChange);
    return () => {
      model.changed.disconnect(onChange);
    };
  }, [model, wanted]);
}
