// C# binding of libservicepoint: assembly attributes.

using System.Runtime.CompilerServices;

// The tests reach the P/Invoke declarations (Native) and the handles.
[assembly: InternalsVisibleTo("Servicepoint.Tests")]
