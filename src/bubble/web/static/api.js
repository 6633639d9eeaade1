// Calls to the Bubble API. Errors come back in one shape, {error, hint}; they are thrown
// as ApiError so the page can show both parts.

export class ApiError extends Error {
  constructor(message, hint, status) {
    super(message);
    this.hint = hint || "";
    this.status = status;
  }
}

async function request(path, options = {}) {
  let resp;
  try {
    resp = await fetch(path, { credentials: "same-origin", ...options });
  } catch (err) {
    throw new ApiError("the server cannot be reached", "is `bubble serve` running?", 0);
  }
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("application/json") ? await resp.json() : null;
  if (!resp.ok) {
    throw new ApiError(body?.error || `HTTP ${resp.status}`, body?.hint, resp.status);
  }
  return body;
}

export const getJSON = (path) => request(path);

export const postJSON = (path, data) =>
  request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });

export function upload(file) {
  const form = new FormData();
  form.append("file", file);
  return request("/api/uploads", { method: "POST", body: form });
}

export const deleteJSON = (path) => request(path, { method: "DELETE" });
