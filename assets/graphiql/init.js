// Starts GraphiQL on the page served at the GraphQL endpoint itself (GET /api/graphql): the
// queries go to the page's own URL, so the page also works behind a reverse proxy's prefix.
// The browser sends the admin API's Basic credentials it was given when it asked for them.
(function () {
  "use strict";
  var endpoint = window.location.origin + window.location.pathname;
  var fetcher = GraphiQL.createFetcher({
    url: endpoint,
    fetch: function (url, options) {
      return window.fetch(url, Object.assign({}, options, { credentials: "same-origin" }));
    },
  });
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
    })
  );
})();
