// Loaded before the widget renderer (@jupyter-widgets/html-manager's embed.js) on pages that hold
// saved widget state. Two things the renderer needs to work offline:
// 1. its font files are next to it, not on a CDN: tell webpack where they are;
// 2. it typesets labels with the MathJax 2 API (MathJax.Hub.Queue), the site runs MathJax 3:
//    give it a Hub.Queue that calls MathJax 3's typesetPromise.
(function () {
  "use strict";
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    window.__jupyter_widgets_assets_path__ = new URL(".", here).href;
  }
  function installHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub) {
      return;
    }
    if (typeof mj.typesetPromise !== "function") {
      // MathJax did not load (only its configuration is there): labels stay as text, widgets render
      mj.Hub = { Queue: function () {} };
      return;
    }
    mj.Hub = {
      Queue: function () {
        var elements = [];
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
            elements.push(job[2]);
          }
        }
        if (elements.length) {
          mj.startup.promise.then(function () {
            return mj.typesetPromise(elements);
          });
        }
      },
    };
  }
  // Registered before embed.js registers its own "load" listener, so the Hub exists when it renders.
  document.addEventListener("DOMContentLoaded", installHub);
  window.addEventListener("load", installHub);
})();
