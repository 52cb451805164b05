// Applies the stored light/dark choice before the page paints (the page's only blocking script).
try {
  const theme = localStorage.getItem("cocina-theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
} catch (_) { /* storage may be off: the system's choice applies */ }
