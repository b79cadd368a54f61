// changeflow's web view: applies the fragments the server streams (server-sent events) to the
// page. No polling: the server pushes when something changed, and says when nothing more will.
'use strict';
for (const element of document.querySelectorAll('[data-stream]')) {
  const source = new EventSource(element.dataset.stream);
  source.addEventListener('regions', (event) => {
    const update = JSON.parse(event.data);
    for (const region of update.regions) {
      const target = document.getElementById(region.id);
      if (target) target.innerHTML = region.html;
    }
    if (update.end) source.close();
  });
  source.addEventListener('end', () => source.close());
}
