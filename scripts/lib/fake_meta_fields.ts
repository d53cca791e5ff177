// Graph API field expansion, as the fake Meta needs it: `id,permissions,accounts.limit(100){id,name,
// instagram_business_account{id,username}}` becomes a tree of fields with their modifiers.

export interface FieldSelection {
  name: string;
  /** `.limit(n)` and the like. */
  modifiers: Record<string, string>;
  /** `{...}`: the sub-fields asked for; empty when none were named. */
  children: FieldSelection[];
}

export function parseFields(text: string): FieldSelection[] {
  let position = 0;

  function fields(): FieldSelection[] {
    const list: FieldSelection[] = [];
    while (position < text.length && text[position] !== "}") {
      list.push(field());
      if (text[position] === ",") position++;
    }
    return list;
  }

  function field(): FieldSelection {
    const name = word();
    const modifiers: Record<string, string> = {};
    while (text[position] === ".") {
      position++;
      const modifier = word();
      expect("(");
      const end = text.indexOf(")", position);
      if (end < 0) throw new SyntaxError(`unclosed modifier in "${text}"`);
      modifiers[modifier] = text.slice(position, end);
      position = end + 1;
    }
    let children: FieldSelection[] = [];
    if (text[position] === "{") {
      position++;
      children = fields();
      expect("}");
    }
    return { name, modifiers, children };
  }

  function word(): string {
    const match = /^[a-z_][a-z0-9_]*/i.exec(text.slice(position));
    if (!match) throw new SyntaxError(`expected a field name at ${position} in "${text}"`);
    position += match[0].length;
    return match[0];
  }

  function expect(char: string) {
    if (text[position] !== char) throw new SyntaxError(`expected "${char}" at ${position} in "${text}"`);
    position++;
  }

  const parsed = fields();
  if (position !== text.length) throw new SyntaxError(`unexpected "${text[position]}" in "${text}"`);
  return parsed;
}

/** The sub-fields back in Graph's syntax, for the `fields` of a paging link. */
export function formatFields(fields: FieldSelection[]): string {
  return fields.map((field) =>
    field.name +
    Object.entries(field.modifiers).map(([name, value]) => `.${name}(${value})`).join("") +
    (field.children.length ? `{${formatFields(field.children)}}` : "")
  ).join(",");
}
