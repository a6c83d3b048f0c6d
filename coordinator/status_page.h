// The HTML page of the status view (GET / of `fanmap --status`): one
// self-contained document, no external assets, that fetches /status every
// second and shows the run's counts and a table of its workers. Text from
// the status (worker names, hosts, reasons) is set as textContent, never
// parsed as HTML.
#ifndef FANMAP_COORDINATOR_STATUS_PAGE_H_
#define FANMAP_COORDINATOR_STATUS_PAGE_H_

namespace fanmap {

extern const char kStatusPageHtml[];

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_STATUS_PAGE_H_
