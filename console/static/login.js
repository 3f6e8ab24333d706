"use strict";
// Shows why the last login failed (the server redirects to /login?error=failed|locked).
document.addEventListener("DOMContentLoaded", () => {
  const why = new URLSearchParams(location.search).get("error");
  const box = document.getElementById("login-error");
  const text = {
    failed: "Wrong account name or password.",
    locked: "Too many failed logins: wait a few minutes, then try again.",
  }[why];
  if (text) { box.textContent = text; box.hidden = false; }
});
