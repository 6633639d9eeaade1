// The scoped policy as the page edits it: the policy file's TOML. The server parses it
// (web/vocab.py, strict); the page only writes a record's scopes back as text.

/** A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML wants escaped. */
const tomlString = (s) => JSON.stringify(s).replace(/\u007f/g, "\\u007F");

/** `{"fs": {"write": [...]}, "net": {"connect": [...]}}` -> the policy file's text. */
export function scopesToml(scopes) {
  const lines = [];
  const write = scopes?.fs?.write || [];
  const connect = scopes?.net?.connect || [];
  if (write.length) lines.push("[fs]", `write = [${write.map(tomlString).join(", ")}]`);
  if (connect.length) lines.push("[net]", `connect = [${connect.map(tomlString).join(", ")}]`);
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** True if the text holds nothing but blanks and comments (no scope to send). */
export const blankToml = (text) => text.split("\n").every((l) => /^\s*(#.*)?$/.test(l));
