// Sends the sign-in's response form to the application (form_post).
document.getElementById('response').submit();
